# Thin wrapper: every real step lives in meson.build or scripts/.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz

.PHONY: all deps build check bench fuzz format clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	@ninja -C $(BUILD)

# Builds (normal and ASan+UBSan), runs every suite, a short fuzz run, prints "N passed, N failed".
check: deps
	@scripts/check.sh

bench: build
	@scripts/bench.sh $(BUILD)

fuzz: deps
	@scripts/fuzz.sh build $(BUILD_FUZZ)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
