#!/usr/bin/env bash
# Builds the ftvm image with no registry: a rootfs from local files (this host's `node` binary and
# the shared libraries it and the native addons load, the built project, production node_modules
# minus the AssemblyScript compiler), imported with `docker import`. Equivalent to deploy/Dockerfile.
#
#   deploy/image/build.sh [tag]        (default tag: ftvm:local; needs `npm run build` done first)
#
# Prints the tag and the image size. Nothing from the sources or tests goes in: vfs storage copies
# every layer in full for every container, so the image is kept small (~130 MB, most of it node).
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG="${1:-ftvm:local}"
NODE="$(readlink -f "$(command -v node)")"

[ -f packages/cli/dist/main.js ] || { echo "build.sh: packages/cli/dist/main.js missing: run npm run build first" >&2; exit 1; }
for g in kv http dirtier clockprobe; do
  [ -f "packages/guests/build/$g.wasm" ] || { echo "build.sh: guest $g not built: run npm run build first" >&2; exit 1; }
done

ROOT="$(mktemp -d /tmp/ftvm-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{usr/local/bin,etc,tmp,app/cache,data}
chmod 1777 "$ROOT/tmp"

# node and every shared object it or a native addon needs, at the same paths as on the host.
install -m 0755 "$NODE" "$ROOT/usr/local/bin/node"
copy_libs() {
  { ldd "$1" 2>/dev/null || true; } | awk '/=>/ { print $3 } /^[ \t]*\/.*ld-linux/ { print $1 }' | while read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] || continue
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
}
copy_libs "$NODE"

# Name resolution: docker writes /etc/hosts and /etc/resolv.conf; glibc >= 2.34 has files/dns built in.
printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000:node:/app:/sbin/nologin\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' > "$ROOT/etc/group"

# The project: each workspace package's package.json and dist/, the guests' .wasm.
APP="$ROOT/app"
node -e 'const p=require("./package.json");require("fs").writeFileSync(process.argv[1],JSON.stringify({name:p.name,version:p.version,private:true,type:"module"},null,2))' "$APP/package.json"
mkdir -p "$APP/node_modules/@ftvm"
for dir in packages/*/; do
  pkg="$(basename "$dir")"
  mkdir -p "$APP/packages/$pkg"
  cp "$dir/package.json" "$APP/packages/$pkg/"
  [ -d "$dir/dist" ] && cp -r "$dir/dist" "$APP/packages/$pkg/"
  ln -s "../../packages/$pkg" "$APP/node_modules/@ftvm/$pkg"
done
find "$APP/packages" \( -name '*.map' -o -name '*.d.ts' -o -name '*.tsbuildinfo' \) -delete
mkdir -p "$APP/packages/guests/build"
cp packages/guests/build/*.wasm "$APP/packages/guests/build/"

# Production dependencies as npm resolved them, without the guest compiler (guests ship built)
# and without binaryen's CLI binaries (the runtime uses its JS/wasm library only).
npm ls --omit=dev --all --parseable 2>/dev/null | grep '/node_modules/' | grep -v '/node_modules/@ftvm/' \
  | grep -v '/node_modules/assemblyscript' | sed "s|^$PWD/||" | sort -u | while read -r mod; do
  mkdir -p "$APP/$(dirname "$mod")"
  cp -r "$mod" "$APP/$mod"
done
rm -rf "$APP/node_modules/binaryen/bin"
find "$APP/node_modules" -name '*.musl.node' -delete
find "$APP/node_modules" -name '*.node' | while read -r addon; do copy_libs "$addon"; done

# Instrument the shipped guests once now, so a container's first start does not pay for binaryen.
FTVM_CACHE_DIR="$APP/cache" node --input-type=module -e '
  const vmm = await import(process.argv[1]);
  for (const g of ["kv", "http", "dirtier", "clockprobe"]) vmm.prepareGuest(g, vmm.readGuest(g).wasm);
' "$PWD/packages/vmm/dist/index.js"

tar -C "$ROOT" --numeric-owner -cf - . | docker import \
  --change 'WORKDIR /app' \
  --change 'ENV FTVM_CACHE_DIR=/app/cache' \
  --change 'ENV NODE_ENV=production' \
  --change 'ENV FTVM_LOG_FORMAT=json' \
  --change 'EXPOSE 6380 7000 7001 9100' \
  --change 'ENTRYPOINT ["/usr/local/bin/node", "--min-semi-space-size=16", "/app/packages/cli/dist/main.js"]' \
  --change 'CMD ["--help"]' \
  - "$TAG" >/dev/null
echo "build.sh: $TAG $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
