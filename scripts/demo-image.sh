#!/usr/bin/env bash
# Builds the local demo image `berth-demo/httpd:latest` (no registry needed): FROM scratch with
# Debian's static busybox serving a page with httpd on port 8080. Deploy it from the portal
# with image `berth-demo/httpd:latest` and HTTP port 8080. Skipped when Docker is not usable.
set -euo pipefail
if ! docker info >/dev/null 2>&1; then
  echo "demo-image: Docker is not reachable; skipping the demo image"
  exit 0
fi
if docker image inspect berth-demo/httpd:latest >/dev/null 2>&1; then
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp /bin/busybox "$dir/busybox"
mkdir -p "$dir/www"
cat > "$dir/www/index.html" <<'HTML'
<!doctype html><title>Hello from Berth</title><h1>Hello from Berth</h1><p>Served by busybox httpd in a container Berth deployed.</p>
HTML
cat > "$dir/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
COPY www /www
EXPOSE 8080
CMD ["/bin/busybox", "httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
DOCKERFILE
docker build -q -t berth-demo/httpd:latest "$dir" >/dev/null
echo "demo-image: built berth-demo/httpd:latest"
