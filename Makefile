# Thin wrapper: every real step lives in meson.build or scripts/.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz

.PHONY: all deps build check bench fuzz format clean demo

all: build

deps:
	@scripts/deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	@ninja -C $(BUILD)

# Builds (normal and ASan+UBSan), runs every suite, a short fuzz run, prints "N passed, N failed".
check: deps
	@scripts/check.sh

# Live-migrate a VM with hotplugged devices over loopback TCP and show the result (scripts/demo.sh).
demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	@scripts/bench.sh $(BUILD)

fuzz: deps
	@scripts/fuzz.sh build $(BUILD_FUZZ)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
