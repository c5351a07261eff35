#!/usr/bin/env bash
# Installs what is missing, builds pipetrain (Release; the CUDA backend too when the toolkit is
# present, so CUDA code always compiles), builds a second tree with AddressSanitizer + UBSan, and
# runs the test suite in both (the sanitizer tree runs the tests labelled `sanitize`).
# Tests labelled `gpu` report themselves skipped without a GPU. Tests labelled `timing` compare
# measured time with a prediction (e.g. measured vs simulated bubble); they are meaningful only on
# an idle machine, so CI leaves them out: run them with `ctest -L timing`.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

./scripts/install-deps.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPT_CUDA=AUTO
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS" --timeout 600 -LE timing)

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPT_SANITIZE=ON -DPT_CUDA=OFF
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j "$JOBS" -L sanitize --timeout 600)
