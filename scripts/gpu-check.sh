#!/usr/bin/env bash
# Prepares the one-shot check of the Vulkan engine on a GPU machine (an NVIDIA H100 or H200).
#
# Run HERE, from anywhere: scripts/gpu-check.sh
#   1. builds Release into build-gpu/ (baton and the Vulkan test binaries),
#   2. writes the bundle .gpu/ (git-ignored; added to .git/info/exclude if not already ignored):
#      .gpu/bin (binaries), .gpu/lib (their shared libraries found by ldd, except the glibc and
#      loader basics and the Vulkan loader), .gpu/fixtures (from $BATON_FIXTURES or
#      ../shared/fixtures), and .gl/ (amd64 .debs of the Vulkan loader, libvulkan1, and the GL
#      vendor-neutral dispatch libraries NVIDIA's Vulkan driver, libGLX_nvidia, loads: without
#      them its ICD fails with "Could not get 'vkCreateInstance'"),
#   3. writes .gpu/run.sh, the ONE command to run on the GPU machine from the repo root:
#        bash .gpu/run.sh          (with the device tool: carry [".gpu", ".gl"])
#      It unpacks the loader (only when the machine has none), points the loader at NVIDIA's ICD
#      when no other is installed, prints nvidia-smi, `baton devices`, runs the Vulkan tests on
#      the NVIDIA device (kernel tuning off but in its own test), then `baton bench --shape 14b
#      --batch 1,8,64 --prefill 512 --sweep`, tuned as a served model is, the tensor cores
#      included where tuning finds them faster, and the LayerNorms and WKV fused into one-token
#      products and the weights read ahead in one-token steps where it finds that faster (its
#      `kernels:` line says; the sweep: batch-1 decode reading 0, 2, 4, 8, 16 and 32 MiB ahead,
#      then under each one-token matmul configuration, x-staging ones also fused (+ln, +wkv,
#      +ln+wkv), each checked bitwise against the
#      default, then the batched ones, then each tensor-core matmul configuration where the
#      device has VK_NV_cooperative_matrix, each checked bitwise against the default pair), all tee'd to
#      $OUT/gpu-check.log (.gpu/out/ when OUT is unset), with nvidia-smi's clocks and power every
#      100 ms through the bench in $OUT/clocks.csv. test_vk_backend also runs the fixture
#      cases with BATON_VK_COOPMAT=1 there, held to the same bounds and batch invariance.
#
# Local rehearsal on lavapipe: BATON_BENCH_SHAPE=4,512,2000 BATON_BENCH_PREFILL=64 bash .gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fixtures=${BATON_FIXTURES:-$root/../shared/fixtures}
tests=(test_vk_ops test_vk_backend test_vk_sample test_vk_big)

if ! git check-ignore -q .gpu || ! git check-ignore -q .gl; then
  mkdir -p .git/info
  printf '/.gpu/\n/.gl/\n' >> .git/info/exclude
fi

echo "== building Release into build-gpu/"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-gpu -j "$(nproc)" --target baton "${tests[@]}" >/dev/null

echo "== bundling into .gpu/"
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/out
cp build-gpu/baton .gpu/bin/
for t in "${tests[@]}"; do cp "build-gpu/$t" .gpu/bin/; done
# Shared libraries, except what every Linux has (glibc, the dynamic loader, libgcc_s) and the
# Vulkan loader, which comes from .gl/ so that it finds the machine's own drivers.
ldd .gpu/bin/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libgcc_s.so.*|libvulkan.so.*) ;;
    *) cp -L "$lib" .gpu/lib/ ;;
  esac
done
if [ -f "$fixtures/manifest.json" ]; then
  cp -r "$fixtures" .gpu/fixtures
  rm -rf .gpu/fixtures/tokenizer # not used by the Vulkan tests
else
  echo "warning: no fixtures at $fixtures (set BATON_FIXTURES); the fixture tests will skip" >&2
fi

echo "== fetching the Vulkan loader and GL dispatch .debs into .gl/"
mkdir -p .gl /tmp/amd64/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
# shellcheck disable=SC2086
apt-get $o update >/dev/null
# shellcheck disable=SC2086
(cd .gl && rm -f ./*.deb && apt-get $o download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 >/dev/null)

cat > .gpu/run.sh <<'RUN'
#!/usr/bin/env bash
# The GPU check, run from the repo root on the GPU machine: bash .gpu/run.sh
# Everything goes to $OUT/gpu-check.log as well as the terminal.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/.gpu/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
echo "== gpu-check $(date -u +%FT%TZ) on $(hostname)"
# The Vulkan loader and the GL dispatch libraries NVIDIA's ICD needs: on a machine with an NVIDIA
# driver, or wherever no loader is installed (not on a workstation that already has its own).
if command -v nvidia-smi >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export LD_LIBRARY_PATH=$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null | wc -l)
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ "$icds" -eq 0 ] && [ -f "$nv" ]; then export VK_DRIVER_FILES=$nv; fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-(loader default)}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "(no nvidia-smi)"

echo "== baton devices"
.gpu/bin/baton devices
dev=$(.gpu/bin/baton devices 2>/dev/null | grep -i 'nvidia' | head -1 | sed -n 's/.*vulkan:\([0-9]*\).*/\1/p')
dev=${dev:--1}
echo "device under test: ${dev} (-1: the best)"
export BATON_TEST_VK_DEVICE=$dev BATON_FIXTURES=$PWD/.gpu/fixtures
# Every fence wait bounded at 30 s (the default is 120): a hung kernel costs one wait, not the run.
export BATON_VK_TIMEOUT_S=${BATON_VK_TIMEOUT_S:-30}
# The tests' many backends keep the defaults (tuning each would cost its pipelines' builds and
# timings, about a second apiece); test_vk_backend's tuning test turns it on itself, and the
# bench below tunes as a served model does.
export BATON_VK_TUNE=0
# Nothing kept between runs: every tuning here times afresh (test_vk_backend's cache test names
# its own directory).
export BATON_VK_TUNE_CACHE=off

status=0
for t in test_vk_ops test_vk_backend test_vk_sample test_vk_big; do
  echo "== $t"
  start=$(date +%s)
  timeout 300 ".gpu/bin/$t"
  rc=$?
  echo "== $t: exit $rc ($(( $(date +%s) - start )) s)"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then status=1; fi
done
echo "== $(echo test_vk_backend) under the validation layer (if installed)"
BATON_VK_VALIDATION=sync BATON_TEST_SMALL=1 timeout 120 .gpu/bin/test_vk_backend >/dev/null 2>&1
echo "== validation run: exit $? (77: no validation layer on this machine)"

if [ "$dev" = "-1" ]; then bench_dev=vulkan; else bench_dev=vulkan:$dev; fi
shape=${BATON_BENCH_SHAPE:-14b}
prefill=${BATON_BENCH_PREFILL:-512}
echo "== baton bench --device $bench_dev --shape $shape --batch 1,8,64 --prefill $prefill --sweep"
start=$(date +%s)
# The GPU's clocks and power every 100 ms through the bench (tuning times at whatever clocks the
# device runs at then), to $OUT/clocks.csv.
smi=
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu \
    --format=csv,noheader -lms 100 > "$OUT/clocks.csv" 2>/dev/null &
  smi=$!
fi
echo "== bench starts at $(date -u +%T.%N)"
BATON_VK_TUNE= timeout 420 .gpu/bin/baton bench --device "$bench_dev" --shape "$shape" --batch 1,8,64 --prefill "$prefill" --sweep
rc=$?
if [ -n "$smi" ]; then
  kill "$smi" 2>/dev/null
  echo "== SM clock (MHz) over the bench, first and every 50th sample of $(wc -l < "$OUT/clocks.csv"):"
  awk -F', ' 'NR == 1 || NR % 50 == 0 {print "   " $1 ": SM " $2 ", memory " $3 ", " $4 ", busy " $5}' "$OUT/clocks.csv"
fi
echo "== bench: exit $rc ($(( $(date +%s) - start )) s)"
if [ "$rc" -ne 0 ]; then status=1; fi
echo "== gpu-check done: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
RUN
chmod +x .gpu/run.sh

size=$(du -sm .gpu .gl | awk '{s += $1} END {print s}')
echo "== bundle ready: .gpu/ and .gl/, ${size} MiB"
echo "   on the GPU machine, from the repo root: bash .gpu/run.sh   (device tool: carry .gpu and .gl)"
if [ "$size" -gt 60 ]; then echo "warning: the bundle is over 60 MiB" >&2; fi
