# lxd-swift: the two commands a fresh machine needs are `make run` and `make test`.
#
#   make run     install what is missing, build, start a three-member cluster on 127.0.0.1-3
#                (cluster-configs/three-members.yaml), import the busybox image, launch one
#                container per member, and one Debian container d1 (the image is built on the first
#                run, a few minutes), print `lxdctl cluster list` and `lxdctl list` (scripts/run-local)
#   make test    install what is missing, build everything with tests and the test images, run
#                every test, then a short fuzz run of the REST API (scripts/fuzz-api --short,
#                docs/rest-api.yaml)
#   make images  the test images in images-out/: busybox (scripts/make-busybox-image) and Debian 12
#                with systemd (scripts/make-debian-image: debootstrap, about a minute once per
#                machine, then copied from /var/cache/lxd-swift/images); docs/images.md
#   make test-long  the long runs: 20 Debian containers with systemd on one member at once, each to
#                `running` then stopped cleanly (ManyDebianTests, with LXD_SWIFT_LONG=1), and a fuzz run
#                of thousands of cases (scripts/fuzz-api --long), and 200 live moves round three
#                members, none lost, none running twice (scripts/bench/migration --soak 200)
#   make build   build lxdd, lxdctl and lxd-start
#   make bench   lifecycle and density benchmark against a private lxdd (scripts/bench/lifecycle)
#   make bench-cluster  join, leader kill, forwarding and offline figures of three private members (scripts/bench/cluster)
#   make stop    stop the members started by `make run` (containers keep running)
#   make clean   remove build products and generated images (not the Debian image cache)
#
# Variables: SCRATCH (build dir, default .build), CONFIG (debug|release), LXD_SWIFT_ROOT (default
# /var/lib/lxd-swift; `make run` puts each member in LXD_SWIFT_ROOT/<member>; LXD_DIR is lxdctl's,
# one member's directory, and is not read by make run/stop), LAYOUT (the cluster
# `make run` starts, default cluster-configs/three-members.yaml), TEST_FLAGS (extra `swift test` flags, e.g. --filter RuntimeTests),
# BENCH_ARGS (e.g. "--runs 20 --density 500"), SKIP_CRIU=1 (skip CRIU in bootstrap; dev only).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

SWIFT   ?= swift
SCRATCH ?= .build
CONFIG  ?= debug
LXD_SWIFT_ROOT ?= /var/lib/lxd-swift
LAYOUT  ?= cluster-configs/three-members.yaml
TEST_FLAGS ?=
BENCH_ARGS ?=
# CI has 90 minutes in all; a hung test must fail the run with a message, not eat the budget.
TEST_TIMEOUT ?= 50m

# The toolchain lives in /opt/swift on this machine kind; make it findable without a login shell.
ifneq ($(wildcard /opt/swift/usr/bin/swift),)
export PATH := $(PATH):/opt/swift/usr/bin
endif

SWIFT_FLAGS := --scratch-path $(SCRATCH) -c $(CONFIG)
BIN_DIR     := $(abspath $(SCRATCH))/$(CONFIG)
IMAGES      := images-out
TEST_LOG    := $(SCRATCH)/test.log

# Contract with the tests: where the binaries and the test images are.
export LXD_SWIFT_BIN_DIR := $(BIN_DIR)
export LXD_SWIFT_TEST_IMAGE := $(abspath $(IMAGES))/busybox.tar.xz
export LXD_SWIFT_TEST_COUNTER_IMAGE := $(abspath $(IMAGES))/busybox-counter.tar.xz
export LXD_SWIFT_TEST_DEBIAN_IMAGE := $(abspath $(IMAGES))/debian12.tar.gz

.PHONY: all run test test-long build build-tests bootstrap images bench bench-cluster stop clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@echo "== swift build ($(CONFIG))"
	$(SWIFT) build $(SWIFT_FLAGS)

build-tests: bootstrap
	@echo "== swift build --build-tests ($(CONFIG))"
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests

images: $(LXD_SWIFT_TEST_IMAGE) $(LXD_SWIFT_TEST_COUNTER_IMAGE) $(LXD_SWIFT_TEST_DEBIAN_IMAGE)

# Order-only on bootstrap: busybox-static must exist, but a phony target must not force rebuilds.
$(LXD_SWIFT_TEST_IMAGE): scripts/make-busybox-image | bootstrap
	@scripts/make-busybox-image $@ --init idle

$(LXD_SWIFT_TEST_COUNTER_IMAGE): scripts/make-busybox-image | bootstrap
	@scripts/make-busybox-image $@ --init counter

# debootstrap runs once per machine (the script caches its tarball); after that this is a copy.
$(LXD_SWIFT_TEST_DEBIAN_IMAGE): scripts/make-debian-image | bootstrap
	@scripts/make-debian-image $@

# Every test, as root, without LXD_DIR: tests make their own data directories and must never
# reach the agent of `make run`. CRIU is installed by bootstrap, so its tests must run: as root
# and without SKIP_CRIU=1, LXD_SWIFT_REQUIRE_CRIU=1 makes a missing or broken CRIU fail them
# instead of skipping them. scripts/test-summary repeats failures and skips (with their reasons)
# at the end so they are not lost in the scroll, and ends with "N passed, N failed, N skipped";
# the exit status is swift test's (pipefail), so a failing test fails `make test`.
REQUIRE_CRIU := $(if $(filter 1,$(SKIP_CRIU)),0,$(if $(filter 0,$(shell id -u)),1,0))
# Then the short fuzz run of the REST API (scripts/fuzz-api, about a minute): its failure fails
# `make test` too, and its counts are a line of the summary.
FUZZ_OUTPUT := $(SCRATCH)/fuzz-api.log
# Last, the everyday commands of Debian's lxc 5.0.2 against a three-member cluster
# (scripts/compat/lxc-cli --everyday, about 20 s): each line checks the command's effect; a
# FAIL fails `make test`, and its counts are a line of the summary.
COMPAT_OUTPUT := $(SCRATCH)/lxc-cli.log
FUZZ_TIMEOUT ?= 10m
# `make test` replays one seed, so a red run is a regression, not a new draw; `make test-long`
# draws a new seed each run (printed, and `scripts/fuzz-api --seed N` replays it).
FUZZ_SEED ?= 20261207

test: build-tests images
	@echo "== scripts/check-layers (imports against the module graph in docs/architecture.md)"
	@lrc=0; { scripts/check-layers && scripts/check-layers --self-test; } || lrc=$$?; \
	echo "== scripts/test-busybox-image"; \
	src=0; scripts/test-busybox-image || src=$$?; \
	echo "== scripts/test-debian-image"; \
	drc=0; scripts/test-debian-image $(LXD_SWIFT_TEST_DEBIAN_IMAGE) || drc=$$?; \
	echo "== swift test (LXD_SWIFT_REQUIRE_CRIU=$(REQUIRE_CRIU))"; \
	rc=0; \
	$(if $(CI),timeout -k 60 $(TEST_TIMEOUT)) \
	    env -u LXD_DIR LXD_SWIFT_REQUIRE_CRIU=$(REQUIRE_CRIU) \
	    $(SWIFT) test $(SWIFT_FLAGS) --skip-build --no-parallel $(TEST_FLAGS) 2>&1 | tee $(TEST_LOG) || rc=$$?; \
	echo "== scripts/fuzz-api --short"; \
	frc=0; $(if $(CI),timeout -k 30 $(FUZZ_TIMEOUT)) scripts/fuzz-api --short --seed $(FUZZ_SEED) 2>&1 | tee $(FUZZ_OUTPUT) || frc=$$?; \
	echo "== scripts/compat/lxc-cli --everyday (Debian's lxc 5.0.2 against a three-member cluster)"; \
	crc=0; $(if $(CI),timeout -k 30 600) scripts/compat/lxc-cli --everyday 2>&1 | tee $(COMPAT_OUTPUT) || crc=$$?; \
	LAYERS_STATUS=$$lrc DEBIAN_IMAGE_STATUS=$$drc FUZZ_STATUS=$$frc FUZZ_OUTPUT=$(FUZZ_OUTPUT) \
	    COMPAT_STATUS=$$crc COMPAT_OUTPUT=$(COMPAT_OUTPUT) scripts/test-summary $(TEST_LOG) $$rc $$src $(TEST_TIMEOUT)

# Long runs, minutes each; not part of `make test`. LXD_SWIFT_LONG=1 enables the long suites,
# which then fail rather than skip when they cannot run; the run must also print its figures
# ("long: ..."), so a filter that matches nothing cannot pass. Both runs always run; either
# failing fails the target.
LONG_LOG := $(SCRATCH)/test-long.log
test-long: build-tests images
	@echo "== swift test --filter ManyDebianTests (LXD_SWIFT_LONG=1: 20 Debian containers on one member)"
	@rc=0; \
	env -u LXD_DIR LXD_SWIFT_LONG=1 $(SWIFT) test $(SWIFT_FLAGS) --skip-build --no-parallel \
	    --filter ManyDebianTests 2>&1 | tee $(LONG_LOG) || rc=$$?; \
	if [ $$rc -eq 0 ] && ! grep -q '^long: ' $(LONG_LOG); then \
	    echo "test-long: ManyDebianTests printed no figures: it did not run (see $(LONG_LOG))" >&2; rc=1; \
	fi; \
	echo "== scripts/fuzz-api --long"; \
	frc=0; scripts/fuzz-api --long || frc=$$?; \
	echo "== scripts/bench/migration --soak 200 (200 live moves round three members; $(CONFIG) binaries)"; \
	mrc=0; scripts/bench/migration --soak 200 || mrc=$$?; \
	grep '^long: ' $(LONG_LOG) || true; \
	echo "test-long: ManyDebianTests $$([ $$rc -eq 0 ] && echo passed || echo FAILED), fuzz-api --long $$([ $$frc -eq 0 ] && echo passed || echo FAILED), migration soak $$([ $$mrc -eq 0 ] && echo passed || echo FAILED)"; \
	[ $$rc -eq 0 ] && [ $$frc -eq 0 ] && [ $$mrc -eq 0 ]

# LXD_DIR in the environment is lxdctl's (the README exports one member's directory) and is
# ignored here; given on the command line it is the old spelling of LXD_SWIFT_ROOT: refused, so
# it never silently means one thing to make and another to lxdctl.
define no_lxd_dir
$(if $(filter command line,$(origin LXD_DIR)),$(error make $@: LXD_DIR is lxdctl's (one member's data directory); the parent of the members' directories is LXD_SWIFT_ROOT, e.g. make $@ LXD_SWIFT_ROOT=$(LXD_DIR)))
endef

run: build images
	$(no_lxd_dir)
	@LXD_SWIFT_ROOT=$(LXD_SWIFT_ROOT) scripts/run-local --image $(LXD_SWIFT_TEST_IMAGE) --debian-image $(LXD_SWIFT_TEST_DEBIAN_IMAGE) --layout $(LAYOUT)

stop:
	$(no_lxd_dir)
	@LXD_SWIFT_ROOT=$(LXD_SWIFT_ROOT) LXD_SWIFT_BIN_DIR=$(BIN_DIR) scripts/run-local --stop --layout $(LAYOUT)

bench: build images
	@scripts/bench/lifecycle --image $(LXD_SWIFT_TEST_IMAGE) $(BENCH_ARGS)

bench-cluster: build images
	@scripts/bench/cluster --image $(LXD_SWIFT_TEST_IMAGE) $(BENCH_ARGS)

clean:
	rm -rf $(SCRATCH) $(IMAGES)
