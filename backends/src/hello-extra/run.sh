#!/bin/sh
# Example backend "hello-extra": its tag-suffix (-cpu-hello-extra) extends -cpu-hello,
# the prefix-sibling case that made LocalAI's artifact glob over-match.
echo "hello-extra from the ${BACKEND:-hello-extra} backend"
