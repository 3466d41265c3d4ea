# legate — plain GNU Makefile. Verbs: all (default), check, asan, unit,
# integration, fuzz, bench, demo, clean. See README.md.

CC       ?= gcc
PYTHON   ?= /usr/bin/python3
BUILD    ?= build/release
MODE_CFLAGS ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wpointer-arith -Wcast-qual -Wvla -Werror
# llhttp (the HTTP/1.1 parser) is compiled from the C sources Debian ships
# in node-llhttp; scripts/bootstrap installs it.
LLHTTP_SRC_DIR ?= /usr/share/llhttp
LLHTTP_INC_DIR ?= /usr/share/include/llhttp
LLHTTP_SRCS := $(LLHTTP_SRC_DIR)/api.c $(LLHTTP_SRC_DIR)/http.c $(LLHTTP_SRC_DIR)/llhttp.c
CFLAGS   += -std=c11 -D_GNU_SOURCE $(MODE_CFLAGS) $(WARN) -isystem $(LLHTTP_INC_DIR) $(EXTRA_CFLAGS)
LDFLAGS  += $(EXTRA_LDFLAGS)
LDLIBS   := -lyaml -lcares -lpthread -lm
# The release binary is linked statically: only the library code legate
# uses is mapped, which halves its idle RSS (the shared libc alone maps
# ~1.5 MiB of text into a dynamic binary). Sanitizer builds link dynamically.
BIN_LDFLAGS ?= -static

LIB_SRCS := $(wildcard src/core/*.c src/conf/*.c src/upstream/*.c src/proto/*.c src/admin/*.c) \
            src/wk.c src/gen.c src/opt.c
MAIN_SRC := src/main.c
LLHTTP_OBJS := $(LLHTTP_SRCS:$(LLHTTP_SRC_DIR)/%.c=$(BUILD)/llhttp/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(LLHTTP_OBJS)
MAIN_OBJ := $(MAIN_SRC:%.c=$(BUILD)/%.o)
BIN      := $(BUILD)/legate

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BUILD := build/fuzz
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_SECONDS ?= 20
FUZZ_LONG_SECONDS ?= 600
JOBS ?= $(shell nproc)

ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined


.PHONY: tools all legate check asan unit integration integration-asan fuzz fuzz-short \
        bench demo soak clean bootstrap lint

all: build/legate

# The binary users run: build/legate (release build).
build/legate: $(BIN)
	cp $(BIN) $@.tmp && mv -f $@.tmp $@

$(BIN): $(MAIN_OBJ) $(LIB_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) $(BIN_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# Third-party code: built with its own expectations, not our warning set.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(MODE_CFLAGS) -w -isystem $(LLHTTP_INC_DIR) -c -o $@ $<

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $(UNIT_LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# These make the library's malloc fail on purpose (failing_malloc.h).
$(BUILD)/tests/test_buf $(BUILD)/tests/test_http_head: UNIT_LDFLAGS := -Wl,--wrap=malloc

# Helpers the integration tests drive (not installed).
# legate-failalloc is legate itself with its allocations routed through
# tests/tools/failalloc.c, which fails a share of them on request.
TOOL_SRCS := $(filter-out tests/tools/failalloc.c,$(wildcard tests/tools/*.c))
TOOL_NAMES := $(TOOL_SRCS:tests/tools/%.c=%) legate-failalloc
TOOL_BINS := $(TOOL_NAMES:%=$(BUILD)/tools/%)
FAILALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup

$(BUILD)/tools/legate-failalloc: tests/tools/failalloc.c $(MAIN_OBJ) $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(FAILALLOC_WRAP) -o $@ $^ $(LDLIBS)

$(BUILD)/tools/%: tests/tools/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -o $@ $^ $(LDLIBS)

tools: $(TOOL_BINS)

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)

bootstrap:
	@scripts/bootstrap

# Unsafe string functions fail the build.
lint:
	@! grep -nE '\b(sprintf|strcpy|strcat|gets)\s*\(' $(LIB_SRCS) $(MAIN_SRC) \
	    || { echo "lint: banned function above" >&2; exit 1; }

unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do echo "== $$t"; $$t || exit 1; done

integration: build/legate $(TOOL_BINS)
	LEGATE_BIN=$(CURDIR)/build/legate LEGATE_TOOLS=$(CURDIR)/$(BUILD)/tools \
	    $(PYTHON) -m pytest -q tests/integration

asan:
	$(MAKE) BUILD=build/asan MODE_CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="-fsanitize=address,undefined" BIN_LDFLAGS= \
	    build/asan/legate $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%) \
	    $(TOOL_NAMES:%=build/asan/tools/%)

integration-asan: asan
	@for t in $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%); do echo "== $$t (asan)"; $$t || exit 1; done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    LEGATE_BIN=$(CURDIR)/build/asan/legate LEGATE_TOOLS=$(CURDIR)/build/asan/tools \
	    LEGATE_SANITIZED=1 \
	    $(PYTHON) -m pytest -q tests/integration

# Fuzz builds: the library is compiled once with coverage instrumentation
# (fuzzer-no-link) and every target links those objects.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -g -O1 \
               -Isrc -isystem $(LLHTTP_INC_DIR)
FUZZ_SAN := address,undefined
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) \
                 $(LLHTTP_SRCS:$(LLHTTP_SRC_DIR)/%.c=$(FUZZ_BUILD)/obj/llhttp/%.o)

$(FUZZ_BUILD)/obj/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -w -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c -o $@ $<

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/http_stream.h $(FUZZ_LIB_OBJS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $< $(FUZZ_LIB_OBJS) $(LDLIBS)

-include $(FUZZ_LIB_OBJS:.o=.d)
.SECONDARY: $(FUZZ_LIB_OBJS)

# One fuzz target for FUZZ_SECONDS, its corpus kept under build/fuzz/corpus.
fuzz-run-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p build/fuzz/corpus/fuzz_$*
	@echo "== fuzz_$* ($(FUZZ_SECONDS)s)"
	@$< -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=build/fuzz/ \
	    build/fuzz/corpus/fuzz_$* tests/fuzz/corpus/fuzz_$* 2>build/fuzz/fuzz_$*.log \
	    || { tail -40 build/fuzz/fuzz_$*.log; exit 1; }
	@tail -1 build/fuzz/fuzz_$*.log

# A short run of every fuzz target (part of check), as many at once as there
# are cores; `make fuzz` runs each longer.
fuzz-short: $(FUZZ_BINS)
	$(MAKE) --no-print-directory -j$(JOBS) --output-sync=target $(FUZZ_BINS:$(FUZZ_BUILD)/fuzz_%=fuzz-run-%)

fuzz:
	$(MAKE) fuzz-short FUZZ_SECONDS=$(FUZZ_LONG_SECONDS)

# The builds run in parallel, the test suites one after the other (they
# start real servers and must not compete for the cores).
check: bootstrap lint
	$(MAKE) -j$(JOBS) all tools $(UNIT_BINS) asan $(FUZZ_BINS)
	$(MAKE) unit integration integration-asan fuzz-short
	@echo "check: all passed"

build/bench/blast: bench/blast.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -o $@ $< -lpthread

bench: bootstrap all build/bench/blast
	bench/tcp
	bench/redis
	bench/memcache
	bench/http

demo: bootstrap all
	scripts/demo

# ASan+UBSan build under load while shards die and clients vanish (~60 s).
soak: bootstrap asan
	scripts/soak

clean:
	rm -rf build
