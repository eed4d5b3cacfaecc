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

# The user's own LIBTORCH wins; otherwise the PyPI wheel in the cache.
LIBTORCH := $(shell scripts/install-libtorch.sh)
ifeq ($(LIBTORCH),)
$(error installing libtorch failed: see the messages above)
endif
export LIBTORCH
# The wheel's Python package sits one folder above libtorch: the fixture and
# benchmark scripts import torch from there.
TORCH_PYTHONPATH := $(abspath $(LIBTORCH)/..)

.PHONY: all build demo test fixtures bench install uninstall clean lint

all: build

build:
	$(CARGO) build $(CARGO_FLAGS) --bins

demo: build
	target/release/precisiond run examples/demo/tiny_resnet.pt

test: build
	$(CARGO) test $(CARGO_FLAGS) -- --test-threads=1

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy $(CARGO_FLAGS) --all-targets -- -D warnings

# Regenerates the committed TorchScript fixtures (needs the cached wheel's Python).
fixtures:
	PYTHONPATH=$(TORCH_PYTHONPATH) python3 scripts/make_fixtures.py

bench: build
	PYTHONPATH=$(TORCH_PYTHONPATH) python3 benches/compare_pytorch.py

install: build
	install -Dm755 target/release/precisiond $(DESTDIR)$(BINDIR)/precisiond
	install -Dm755 target/release/precisiond-worker $(DESTDIR)$(BINDIR)/precisiond-worker
	install -Dm644 etc/precisiond.toml $(DESTDIR)$(SYSCONFDIR)/precisiond/precisiond.toml
	install -Dm644 systemd/precisiond.service $(DESTDIR)$(UNITDIR)/precisiond.service
	@echo "installed; start the service with: systemctl enable --now precisiond"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/precisiond $(DESTDIR)$(BINDIR)/precisiond-worker
	rm -f $(DESTDIR)$(UNITDIR)/precisiond.service

clean:
	$(CARGO) clean
