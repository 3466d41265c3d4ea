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
	$(CC) $(CFLAGS) -Isrc -o $@ $^ $(LDLIBS) -lcmocka

# Helpers the integration tests drive (not installed).
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

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
	    $(TOOL_SRCS:tests/tools/%.c=build/asan/tools/%)

integration-asan: asan
	@for t in $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%); do echo "== $$t (asan)"; $$t || exit 1; done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    LEGATE_BIN=$(CURDIR)/build/asan/legate LEGATE_TOOLS=$(CURDIR)/build/asan/tools \
	    LEGATE_SANITIZED=1 \
	    $(PYTHON) -m pytest -q tests/integration

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/http_stream.h $(LIB_SRCS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -g -O1 \
	    -fsanitize=fuzzer,address,undefined -Isrc -isystem $(LLHTTP_INC_DIR) \
	    -o $@ $< $(LIB_SRCS) $(LLHTTP_SRCS) $(LDLIBS)

# A short run of every fuzz target (part of check); `make fuzz` runs longer.
fuzz-short: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); echo "== $$n ($(FUZZ_SECONDS)s)"; \
	    mkdir -p build/fuzz/corpus/$$n; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=build/fuzz/ \
	        build/fuzz/corpus/$$n \
	        tests/fuzz/corpus/$$n 2>build/fuzz/$$n.log || { tail -40 build/fuzz/$$n.log; exit 1; }; \
	    tail -1 build/fuzz/$$n.log; done

fuzz:
	$(MAKE) fuzz-short FUZZ_SECONDS=$(FUZZ_LONG_SECONDS)

check: bootstrap lint all unit integration integration-asan fuzz-short
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
