# precisiond: `make demo` runs the main job on the bundled example, `make test`
# runs every test. Both install libtorch into the cache first when needed.

SHELL := /bin/bash
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
DESTDIR ?=
CARGO ?= cargo
# One profile for everything (tests, demo, benches) so torch-sys builds once.
CARGO_FLAGS ?= --release --locked

# The user's own LIBTORCH wins; otherwise the PyPI wheel in the cache: its
# CPU part (0.5 GB) on a machine without the NVIDIA driver, all of it with
# its CUDA libraries (4.7 GB) where there is one or PRECISIOND_CUDA=1.
LIBTORCH := $(shell scripts/install-libtorch.sh)
ifeq ($(LIBTORCH),)
$(error installing libtorch failed: see the messages above)
endif
export LIBTORCH
# The fixture and benchmark scripts import torch in Python: the full wheel,
# installed (4.7 GB) only when one of them runs.
TORCH_PYTHONPATH = $(shell scripts/install-torch-full.sh)

# Where `make install` copies libtorch (the worker's first rpath entry is
# $ORIGIN/../lib/precisiond/torch/lib): a service user cannot read the
# build user's cache.
LIBDIR ?= $(PREFIX)/lib/precisiond

.PHONY: all build demo demo-aoti test test-deps fixtures bench bench-zoo install uninstall clean lint \
	aarch64-deps build-aarch64 build-aarch64-armv8.0 test-aarch64 deb test-deb

all: build

# Both crates (the workspace's default members): target/release/precisiond
# and target/release/precisiond-worker.
build:
	$(CARGO) build $(CARGO_FLAGS) --bins

demo: build
	target/release/precisiond run examples/demo/tiny_resnet.pt

# The demo model as an AOTInductor family (FP32, BF16, FP16, INT8 packages,
# examples/demo/tiny_resnet.py) measured beside its TorchScript file in one
# job: the table gets an "AOTInductor package vs TorchScript" section. Needs
# Python with the full torch wheel (4.7 GB, installed into the cache on first
# use) and torchao (30 MB); the packages are compiled for THIS machine's CPU
# (--isa native), about a minute or two, into target/demo-aoti/.
DEMO_AOTI_DIR := target/demo-aoti

demo-aoti: build
	PYTHONPATH="$(TORCH_PYTHONPATH):$$(scripts/install-torchao.sh)" \
	  python3 scripts/precisiond-export.py examples/demo/tiny_resnet.py \
	  --name tiny_resnet --out-dir $(DEMO_AOTI_DIR) --isa native
	cp examples/demo/tiny_resnet.pt $(DEMO_AOTI_DIR)/
	echo 'torchscript = "tiny_resnet.pt"' > $(DEMO_AOTI_DIR)/tiny_resnet.pt2.toml
	target/release/precisiond run $(DEMO_AOTI_DIR)/tiny_resnet.pt2

# systemd-analyze checks the unit; readelf (binutils) and cc come with the
# Rust toolchain's prerequisites.
# torchvision's operator library (tests/op_libraries.rs), made loadable
# without Python in the cache, where the worker looks for it by default.
test-deps:
	@scripts/install-torchvision.sh >/dev/null
	@scripts/need-deb.sh systemd-analyze systemd
	@scripts/need-deb.sh chromium chromium
	@scripts/need-deb.sh promtool prometheus

# A test that this machine lets check nothing (no GPU, not root, no
# avx512_bf16...) or less than elsewhere says so on stderr and in this
# log (tests/common/skip.rs), printed at the end so CI's output lists it.
SKIP_LOG := target/release/skipped-tests.txt

test: build test-deps
	rm -f $(SKIP_LOG)
	$(CARGO) test $(CARGO_FLAGS) --workspace -- --test-threads=1
	scripts/check-systemd.sh target/release/precisiond
	scripts/check-tmpfiles.sh
	scripts/check-mdwe.sh target/release/precisiond-worker
	@if [ -s $(SKIP_LOG) ]; then \
	  echo "Checked less on this machine ($(SKIP_LOG)):"; cat $(SKIP_LOG); \
	else echo "No test skipped anything on this machine."; fi

# ARM boards from this x86 machine: cross-built for aarch64 against the
# aarch64 libtorch in the cache (a user's LIBTORCH_AARCH64 wins), and run
# under qemu-user (scripts/aarch64-run.sh).
AARCH64_TARGET := aarch64-unknown-linux-gnu
AARCH64_DIR := $(CURDIR)/target/$(AARCH64_TARGET)/release

aarch64-deps:
	@scripts/need-deb.sh aarch64-linux-gnu-g++ gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
	@rustup target list --installed | grep -qx $(AARCH64_TARGET) || rustup target add $(AARCH64_TARGET)

build-aarch64: aarch64-deps
	LIBTORCH="$$(scripts/install-libtorch-aarch64.sh)" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	  $(CARGO) build $(CARGO_FLAGS) --target $(AARCH64_TARGET) --bins
	@echo "built $(AARCH64_DIR)/precisiond and precisiond-worker; run them with scripts/aarch64-run.sh"

# The worker for ARMv8.0 boards (Raspberry Pi 3/4, Jetson Nano/TX1/TX2):
# the same sources against Debian 13's libtorch 2.6 through tch 0.19
# (worker/tch-0.19/, a workspace and lock of its own), linked with Debian
# 13's glibc and libstdc++ from the cache's sysroot.
ARMV8_0_DIR := $(CURDIR)/target/armv8.0/$(AARCH64_TARGET)/release

build-aarch64-armv8.0: aarch64-deps
	debian="$$(scripts/install-libtorch-debian-arm64.sh)" && \
	cd worker/tch-0.19 && \
	LIBTORCH="$$debian/libtorch" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	RUSTFLAGS="-C link-arg=--sysroot=$$debian/sysroot -L native=$$debian/linkdir" \
	  $(CARGO) build $(CARGO_FLAGS) --target $(AARCH64_TARGET) --target-dir $(CURDIR)/target/armv8.0
	@echo "built $(ARMV8_0_DIR)/precisiond-worker (libtorch 2.6); run it with AARCH64_SYSROOT=$$(scripts/install-libtorch-debian-arm64.sh)/sysroot scripts/aarch64-run.sh"

test-aarch64: build-aarch64 build-aarch64-armv8.0
	scripts/install-qemu.sh >/dev/null
	PRECISIOND_AARCH64_DIR=$(AARCH64_DIR) \
	PRECISIOND_ARMV8_0_WORKER=$(ARMV8_0_DIR)/precisiond-worker \
	PRECISIOND_ARMV8_0_SYSROOT="$$(scripts/install-libtorch-debian-arm64.sh)/sysroot" \
	  $(CARGO) test $(CARGO_FLAGS) -p precisiond --test aarch64 -- --ignored --test-threads=1

# Debian packages (cargo-deb): precisiond and precisiond-libtorch-cpu, for
# amd64 and arm64, in target/debian/.
deb: build build-aarch64 build-aarch64-armv8.0
	scripts/make-deb.sh x86_64
	scripts/make-deb.sh aarch64
	scripts/make-deb.sh armv8.0

# make install and the packages, installed into throwaway roots and checked
# (lintian too).
test-deb: deb
	@scripts/need-deb.sh lintian lintian
	scripts/check-install.sh
	PRECISIOND_ARMV8_0_SYSROOT="$$(scripts/install-libtorch-debian-arm64.sh)/sysroot" scripts/check-deb.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

# Regenerates the committed TorchScript fixtures (needs the cached wheel's Python).
fixtures:
	PYTHONPATH=$(TORCH_PYTHONPATH) python3 scripts/make_fixtures.py
	scripts/make_aoti_fixtures.sh

bench: build
	$(CARGO) bench --locked --bench analysis
	PYTHONPATH=$(TORCH_PYTHONPATH) python3 benches/compare_pytorch.py
	benches/detect.sh
	benches/daemon_idle.sh
	benches/many_models.py

# The zoo (benches/zoo/): about 50 real architectures from torchvision,
# timm, transformers, ultralytics, torchaudio and hand-written RNNs, built
# with random weights into the cache's zoo-models/ folder on first use
# (scripts/install-zoo.sh installs their Python packages, about 400 MB),
# then `precisiond run` on each; prints how many are ok per precision and
# the failures by class, also into zoo-models/zoo-table.md.
# ZOO_MODELS=name,... for a subset; ZOO_FLAGS for run_zoo.py's other flags
# (--jobs, --timeout, --zoo DIR).
comma := ,
ZOO_MODELS ?=
ZOO_FLAGS ?=

bench-zoo: build
	python3 benches/zoo/run_zoo.py $(subst $(comma), ,$(ZOO_MODELS)) $(ZOO_FLAGS)

install: build
	install -Dm755 target/release/precisiond $(DESTDIR)$(BINDIR)/precisiond
	install -Dm755 target/release/precisiond-worker $(DESTDIR)$(BINDIR)/precisiond-worker
	# An existing config is the admin's: never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/precisiond/precisiond.toml ] || install -Dm644 etc/precisiond.toml $(DESTDIR)$(SYSCONFDIR)/precisiond/precisiond.toml
	# The unit names /usr/bin (the Debian package's layout): point it here.
	install -d $(DESTDIR)$(UNITDIR)
	sed 's#^ExecStart=/usr/bin/precisiond #ExecStart=$(BINDIR)/precisiond #' systemd/precisiond.service \
	  > $(DESTDIR)$(UNITDIR)/precisiond.service
	chmod 644 $(DESTDIR)$(UNITDIR)/precisiond.service
	install -Dm644 systemd/precisiond.sysusers $(DESTDIR)/usr/lib/sysusers.d/precisiond.conf
	install -Dm644 systemd/precisiond.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/precisiond.conf
	install -Dm644 systemd/precisiond-cuda.conf $(DESTDIR)$(PREFIX)/share/doc/precisiond/precisiond-cuda.conf
	# The libtorch the worker loads, in the layout its own $$ORIGIN rpaths
	# expect (lib/precisiond/{torch/lib,nvidia}): on a CPU-only machine the
	# 0.5 GB CPU part, with a GPU the CUDA libraries too; never the
	# Python-only parts of the wheel.
	install -d $(DESTDIR)$(LIBDIR)/torch/lib
	cp -a $$(ls -d $(LIBTORCH)/lib/*.so* | grep -v -e libtorch_python -e libshm) $(DESTDIR)$(LIBDIR)/torch/lib/
	if [ -d $(LIBTORCH)/../nvidia ]; then cp -a $(LIBTORCH)/../nvidia $(DESTDIR)$(LIBDIR)/; fi
	# torchvision's operator library (10 MB), where the installed worker
	# looks for it (worker/src/libs.rs): lib/precisiond/torchvision/.
	ops="$$(scripts/install-torchvision.sh)" && install -d $(DESTDIR)$(LIBDIR)/torchvision && \
	  cp "$$(dirname "$$ops")"/*.so $(DESTDIR)$(LIBDIR)/torchvision/
	@echo "installed; create the service user and start the service with:"
	@echo "  systemd-sysusers && systemd-tmpfiles --create /usr/lib/tmpfiles.d/precisiond.conf"
	@echo "  systemctl daemon-reload && systemctl enable --now precisiond"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/precisiond $(DESTDIR)$(BINDIR)/precisiond-worker
	rm -f $(DESTDIR)$(UNITDIR)/precisiond.service $(DESTDIR)/usr/lib/sysusers.d/precisiond.conf
	rm -f $(DESTDIR)/usr/lib/tmpfiles.d/precisiond.conf
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PREFIX)/share/doc/precisiond

clean:
	$(CARGO) clean
