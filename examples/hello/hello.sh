#!/bin/sh
echo "hello from an image built by function-builder"
