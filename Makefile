# load-balancer-infra: thin wrappers over scripts/ and the playbooks.
#   make demo      lab containers + site.yml, then a sample of requests
#   make test      lint, app unit tests, every Molecule scenario (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV      := .venv
APP_VENV  := app/.venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
RELEASE   ?= bookworm
# MITOGEN=1: playbooks run under mitogen's strategy (figures and limits in bench/README.md).
ifeq ($(MITOGEN),1)
export ANSIBLE_STRATEGY := mitogen_linear
export ANSIBLE_STRATEGY_PLUGINS = $(firstword $(wildcard $(CURDIR)/$(VENV)/lib/python3*/site-packages/ansible_mitogen/plugins/strategy))
endif
# The releases the Molecule scenarios' hosts run between them.
RELEASES  := bullseye bookworm trixie
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# The floating address of inventory/lab (keepalived_vip_addresses), reached from a lab container.
LAB_URL   := https://10.199.4.100
LAB_CLIENT := lbi-lab-mon1
LAB_PROMETHEUS := http://127.0.0.1:9090

.PHONY: help venv app-venv docker image image-app image-test images ssh-client lab provision demo sample destroy test lint docs unit molecule bench bench-clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: ## controller tools in .venv (from requirements.txt)
	@scripts/venv.sh $(VENV) requirements.txt

app-venv: ## the app's own test venv (from the lock file)
	@scripts/venv.sh $(APP_VENV) app/requirements.lock app/requirements-dev.txt
	@$(APP_VENV)/bin/pip install -q --no-deps --disable-pip-version-check -e ./app >/dev/null

docker: ## make sure a Docker engine runs (installs Debian's docker.io if needed)
	@scripts/ensure-docker.sh

image: docker ## build the local base images, systemd and SSH (RELEASE=bookworm|trixie|bullseye)
	@scripts/build-image.sh $(RELEASE)

image-app: docker $(if $(BASE_IMAGE),,image) ## lbapp's container image (app/Dockerfile; IMAGE=, BASE_IMAGE= change it)
	@scripts/build-app-image.sh

images: docker ## the base images of every release the scenarios use
	@for r in $(RELEASES); do scripts/build-image.sh $$r; done

lab: venv image ## create or restart the lab containers
	@echo "==> Creating the lab containers (playbooks/lab_up.yml)"
	@ansible-playbook playbooks/lab_up.yml

provision: venv ## run playbooks/site.yml against the lab
	@echo "==> Provisioning the tier (playbooks/site.yml)"
	@ansible-playbook playbooks/site.yml

demo: lab provision sample ## everything: lab + site.yml + a sample of requests

sample: ## show which backend and load balancer answer a few requests, and the monitoring URL
	@scripts/sample.sh $(LAB_URL) 9 $(LAB_PROMETHEUS) $(LAB_CLIENT)

destroy: venv docker ## remove the lab containers and network (nothing else)
	@ansible-playbook playbooks/lab_down.yml

test: lint unit image-test molecule ## lint, unit tests, the app image, every Molecule scenario

lint: venv ## ansible-lint (production), yamllint, ruff, role variable docs
	@echo "==> yamllint"; yamllint --strict .
	@echo "==> ansible-lint (production profile)"; ansible-lint --profile production --offline
	@echo "==> ruff"; ruff check . && ruff format --check .
	@echo "==> role variables (argument specs, defaults, README tables)"; python scripts/role_docs.py --check

docs: venv ## regenerate the README's role variable tables from meta/argument_specs.yml
	@python scripts/role_docs.py

# The script takes /tmp/lbi-docker.lock itself for the build: never run this under flock.
image-test: venv image ## run lbapp's image read-only on 127.0.0.1 and check it (tests/image; builds it if needed)
	@echo "==> The app's container image"
	@$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/image

unit: venv app-venv ## the app's pytest suite with coverage, and the project's modules, filters and health checker
	@echo "==> App unit tests"
	@cd app && .venv/bin/python -m pytest
	@echo "==> Unit tests of the modules, filters and health checker"
	@$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit

ssh-client: ## the OpenSSH client that scenarios reach SSH hosts with (Debian's, if missing)
	@command -v ssh >/dev/null || { echo "==> Installing Debian's openssh-client"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends openssh-client >/dev/null; }

molecule: venv docker ## every Molecule scenario (SCENARIOS="default ..." to pick; each builds the images it needs)
	@for s in $(SCENARIOS); do echo "==> molecule test -s $$s"; \
	  molecule test -s $$s 2>&1 | tee /tmp/lbi-molecule-$$s.log \
	  || { echo "==> $$s failed; its failing tests (full log: /tmp/lbi-molecule-$$s.log):"; \
	       grep -E '^(FAILED|ERROR) [^-]|^E   ' /tmp/lbi-molecule-$$s.log | head -n 80; exit 1; }; done

bench: venv image ## benchmarks, on demand (long, never in make test; see bench/README.md): bench/results/latest.md
	@echo "==> Benchmarks (waiting for /tmp/lbi-docker.lock if another Docker-heavy run holds it)"
	@flock /tmp/lbi-docker.lock .venv/bin/python bench/bench.py

bench-clean: venv docker ## remove the bench containers (lbi-bench-*) and network, nothing else
	@ansible-playbook -i bench/inventory/hosts.yml playbooks/lab_down.yml
