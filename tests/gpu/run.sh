#!/usr/bin/env bash
# The test suite under JAX on a machine with GPUs and no TensorFlow (the lent GPU machines).
#
#   bash tests/gpu/run.sh --download    # here, with network: Keras and its two small dependencies as
#                                       # wheels into .whl/ (git-ignored), for Python 3.12 on x86-64
#   bash tests/gpu/run.sh [PYTEST ARGS] # there, in the repository root (carry .whl): installs the
#                                       # wheels into /tmp/site and runs every test that needs no
#                                       # TensorFlow, under KERAS_BACKEND=jax, at default precision
#   bash tests/gpu/run.sh --shard K/N [PYTEST ARGS]
#                                       # only the K-th of N shares of the collected test files
#                                       # (every N-th file in sorted order, from the K-th; pytest's
#                                       # --shard of tests/conftest.py): the whole suite takes longer
#                                       # than one 10-minute call on one H200
#
# The tests themselves ask for what they need: full float32 precision for exactness (tests/conftest.py),
# the CPU platform for host-device tests, two GPUs or more for the equality of units over GPUs.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ "${1:-}" == "--download" ]]; then
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree
  ls .whl
  exit 0
fi
shard=()
if [[ "${1:-}" == "--shard" ]]; then  # a pytest option of tests/conftest.py: shares of the collected files
  shard=(--shard "${2:-}")
  shift 2 || shift
fi
if ! python -c "import keras" 2>/dev/null; then
  python -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
python -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)"
if (( ${#shard[@]} )) || (( $# == 0 )); then  # the shard's files, or the whole suite
  python -m pytest -q -p no:cacheprovider "${shard[@]}" "$@" tests
else  # the caller's own pytest arguments
  python -m pytest -q -p no:cacheprovider "$@"
fi
