# Thin wrapper over CMake. Every target first installs what is missing
# (scripts/install-deps.sh: Debian packages, idempotent).
BUILD      ?= build
SAN_BUILD  ?= build-sanitize
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 20
SOAK_MINUTES ?= 10

.PHONY: all deps build test sanitize bench demo fuzz soak clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j 1

sanitize: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFONTE_SANITIZE=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)
	@cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 1

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFONTE_FUZZ=ON -DFONTE_TESTS=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_event fuzz_request fuzz_text
	@scripts/fuzz.sh $(FUZZ_BUILD)/bin $(FUZZ_SECONDS)

# Not in CI: the chaos reliability test with a new seed per run, for
# SOAK_MINUTES (scripts/soak.sh).
soak: build
	@scripts/soak.sh $(BUILD)/bin $(SOAK_MINUTES)

bench: build
	@$(BUILD)/bin/fonte-bench

# The demo narrates; the build's own output goes to a log.
demo: deps
	@echo "demo: building fonte into $(BUILD)/ (log: $(BUILD)/build.log)"
	@mkdir -p $(BUILD)
	@{ cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo && \
	   cmake --build $(BUILD) -j $(JOBS); } > $(BUILD)/build.log 2>&1 || \
	  { tail -30 $(BUILD)/build.log; echo "demo: the build failed; see $(BUILD)/build.log"; exit 1; }
	@scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
