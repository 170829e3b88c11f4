#!/usr/bin/env bash
# Builds the Jazzer.js fuzzer addon (test/fuzz/native/build/Release/jazzer_fuzzer.node) from the
# Jazzer.js sources in src/ against the system's libFuzzer. Needed where the prebuilt addon that
# @jazzer.js/fuzzer ships does not load: it is linked against glibc 2.38 and libstdc++ 3.4.32,
# newer than Debian 12's (2.36, 3.4.30). Needs g++, make, python3 and libFuzzer's no-main archive
# (Debian: apt-get install libclang-rt-16-dev). Set AIRLOCK_LIBFUZZER to use another archive.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
gyp="$root/node_modules/.bin/node-gyp"
[[ -x "$gyp" ]] || { echo "node-gyp not found in $root/node_modules (run npm ci first)" >&2; exit 1; }
lib="${AIRLOCK_LIBFUZZER:-}"
if [[ -z "$lib" ]]; then
  for candidate in /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a \
    /usr/lib/llvm-*/lib/clang/*/lib/x86_64-pc-linux-gnu/libclang_rt.fuzzer_no_main.a; do
    [[ -f "$candidate" ]] && lib="$candidate"
  done
fi
if [[ -z "$lib" || ! -f "$lib" ]]; then
  echo "libFuzzer (libclang_rt.fuzzer_no_main) not found: apt-get install libclang-rt-16-dev, or set AIRLOCK_LIBFUZZER" >&2
  exit 1
fi
cd "$here"
"$gyp" rebuild --release --silent -- -Dlibfuzzer="$lib" >&2
test -f build/Release/jazzer_fuzzer.node
echo "built $here/build/Release/jazzer_fuzzer.node against $lib" >&2
