#!/bin/sh
# Builds churn-model as a statically linked executable (glibc, crt-static) for a FROM-scratch
# image and copies it to dist/churn-model. With --target, RUSTFLAGS apply only to the target
# artifacts, not to build scripts and proc macros (which must stay dynamic).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=x86_64-unknown-linux-gnu
cd "$root"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release -p churn-model --target "$target"
mkdir -p "$here/dist"
cp "$root/target/$target/release/churn-model" "$here/dist/churn-model"
# Refuse to ship something that would not start in an empty image.
if command -v file >/dev/null 2>&1; then
  case "$(file -b "$here/dist/churn-model")" in
    *dynamically*) echo "error: dist/churn-model is dynamically linked" >&2; exit 1 ;;
  esac
fi
echo "built $here/dist/churn-model"
