#!/bin/sh
# Example backend "hello": what a real backend's entry point would be.
echo "hello from the ${BACKEND:-hello} backend (${BUILD_TYPE:-cpu})"
