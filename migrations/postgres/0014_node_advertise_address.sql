-- A node's advertise address: its IP on the private network the ingress and the health
-- probes reach it by. When set, instances on the node publish their HTTP port on that address
-- (an ephemeral host port), and `deployment_locations.ip_address`/`port` hold that address and
-- the published port instead of the container's bridge address, which only its own host
-- reaches. NULL (the local node, and nodes added before): the bridge address.

ALTER TABLE nodes ADD COLUMN advertise_address TEXT;
