#!/bin/sh
# The make target for an architecture and build type (LocalAI: .docker/llama-cpp-build-target.sh).
echo "${1:-unknown}-${2:-cpu}"
