#!/bin/sh
# Example backend "echo": built for amd64 only (single-arch entry).
echo "$@"
