# elliott: one binary, one static library per layer.
#
#   make                 build build/elliott
#   make check           build, then run every test (unit, golden, end-to-end)
#   make SAN=1 check     the same under AddressSanitizer + UBSan (in build-san/)
#   make TSAN=1 CC=clang check-threads
#                        the engine's and the server's tests under ThreadSanitizer (build-tsan/)
#   make CC=clang        any C11 compiler; warnings are errors
#   make fuzz            libFuzzer targets (clang), in build-fuzz/
#   make install         install the binary, the man page and the docs under PREFIX
#                        (default /usr/local; DESTDIR for staging); make uninstall
#   make bench           the kernel benchmark, $(BUILD)/bench/kernels_bench
#   make compile_commands.json   the compile database for editors and clang tools
#
# Layers and what each may use. A layer links only against the ones listed
# after it, so a dependency pointing the wrong way fails to link.

LAYERS := cli server hub registry engine grammar sampler chat tokenizer model kernels gguf base

DEPS_base      :=
DEPS_gguf      := base
DEPS_kernels   := gguf base
DEPS_model     := kernels gguf base
DEPS_tokenizer := gguf base
DEPS_chat      := tokenizer gguf base
DEPS_sampler   := base
DEPS_grammar   := base
DEPS_engine    := grammar sampler chat tokenizer model kernels gguf base
DEPS_hub       := gguf base
DEPS_registry  := engine $(DEPS_engine)
DEPS_server    := registry $(DEPS_registry)
DEPS_cli       := server hub $(DEPS_server)
# test-only groupings
DEPS_golden    := engine $(DEPS_engine)
DEPS_grammar_vocab := grammar tokenizer gguf base

SYSLIBS_server := -lmicrohttpd -ljansson -lgnutls
SYSLIBS_hub    := -lcurl -ljansson
SYSLIBS_grammar := -ljansson
# Tests may read JSON goldens with jansson whatever their layer.
SYSLIBS_tests  := -ljansson

SAN ?= 0
TSAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT ?= -O1
else ifeq ($(TSAN),1)
BUILD ?= build-tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
OPT ?= -O1
else
BUILD ?= build
SANFLAGS :=
OPT ?= -O2
endif

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS ?=
CPPFLAGS_ALL := -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS_ALL := -std=c11 $(OPT) -g -pthread $(WARN) $(SANFLAGS) $(CFLAGS)
LDFLAGS_ALL := -pthread $(SANFLAGS) $(LDFLAGS)
ARCH := $(shell uname -m)
# Files named *_avx2.c, *_avxvnni.c and *_avx512.c hold the kernels for those
# instruction sets (chosen at run time after a CPUID check); nothing else is.
ifeq ($(ARCH),x86_64)
SIMDFLAGS := -mavx2 -mfma -mf16c -mbmi2
AVXVNNIFLAGS := -mavxvnni $(SIMDFLAGS)
AVX512FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 $(SIMDFLAGS)
else
SIMDFLAGS :=
AVXVNNIFLAGS :=
AVX512FLAGS :=
endif
# The instruction-set flags for a source stem (the file name without .c).
isa_flags_of = $(if $(filter %_avx512,$(1)),$(AVX512FLAGS),$(if $(filter %_avxvnni,$(1)),$(AVXVNNIFLAGS),$(if $(filter %_avx2,$(1)),$(SIMDFLAGS))))

.DEFAULT_GOAL := all
.PHONY: all check unit test-bin clean fuzz check-threads bench compile_commands.json

srcs_of = $(wildcard src/$(1)/*.c) $(wildcard src/$(1)/*.S)
objs_of = $(patsubst src/%,$(BUILD)/obj/%.o,$(call srcs_of,$(1)))
lib_of = $(BUILD)/lib$(1).a
# A layer's libraries in link order (it first, then what it uses) and system libraries.
libs_for = $(foreach l,$(LAYERS),$(if $(filter $(l),$(1) $(DEPS_$(1))),$(call lib_of,$(l))))
syslibs_for = $(foreach l,$(1) $(DEPS_$(1)),$(SYSLIBS_$(l))) -lm

define layer_rules
$(call lib_of,$(1)): $(call objs_of,$(1))
	@mkdir -p $$(@D)
	@rm -f $$@
	$$(AR) rcs $$@ $$^ $$(if $$^,,$(BUILD)/empty.o)
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rules,$(l))))

$(BUILD)/empty.o:
	@mkdir -p $(@D)
	echo 'typedef int el_empty_translation_unit;' | $(CC) $(CFLAGS_ALL) -x c -c -o $@ -

$(foreach l,$(LAYERS),$(call lib_of,$(l))): | $(BUILD)/empty.o

$(BUILD)/obj/%.c.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(call isa_flags_of,$*) -c -o $@ $<

# Assembly only embeds data (.incbin paths are relative to the repository root).
$(BUILD)/obj/%.S.o: src/%.S
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -I. $(SANFLAGS) -c -o $@ $<

# What each .incbin pulls in (the compiler's dependency files do not list them).
$(BUILD)/obj/server/chat_page.S.o: src/server/chat_page.html
$(BUILD)/obj/cli/embedded_model_blob.S.o: models/stories260K.gguf

$(BUILD)/elliott: $(call libs_for,cli)
	$(CC) $(LDFLAGS_ALL) -o $@ -Wl,--whole-archive $(call lib_of,cli) -Wl,--no-whole-archive \
	    $(filter-out $(call lib_of,cli),$(call libs_for,cli)) $(call syslibs_for,cli)

all: $(BUILD)/elliott

# ---- tests ---------------------------------------------------------------------
# tests/<layer>/test_*.c links against that layer and everything it may use;
# tests/golden/ against the engine's closure. tests/test.h is the harness.

TEST_DIRS := $(patsubst %/,%,$(notdir $(patsubst %/,%,$(dir $(wildcard tests/*/test_*.c)))))
TEST_DIRS := $(sort $(TEST_DIRS))
test_srcs_of = $(wildcard tests/$(1)/test_*.c)
test_bins_of = $(patsubst tests/%.c,$(BUILD)/tests/%,$(call test_srcs_of,$(1)))
TEST_BINS := $(foreach d,$(TEST_DIRS),$(call test_bins_of,$(d)))

define test_rules
$(BUILD)/tests/$(1)/%: tests/$(1)/%.c tests/test.h $(call libs_for,$(1))
	@mkdir -p $$(@D)
	$$(CC) $(CPPFLAGS_ALL) -Itests $(CFLAGS_ALL) $(SIMDFLAGS_TEST) -o $$@ $$< $(call libs_for,$(1)) $(call syslibs_for,$(1)) $(SYSLIBS_tests) $(LDFLAGS_ALL)
test-$(1): $(call test_bins_of,$(1))
	@tests/run-tests.sh $(BUILD) $(call test_bins_of,$(1))
.PHONY: test-$(1)
endef
$(foreach d,$(TEST_DIRS),$(eval $(call test_rules,$(d))))

# The allocation-failure loop (tests/alloc/alloc_fail.c): every allocation of the
# project's code goes through wrappers that fail the Nth one.
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=strdup,--wrap=strndup,--wrap=free
ALLOC_BIN := $(BUILD)/tests/alloc/alloc_fail
$(ALLOC_BIN): tests/alloc/alloc_fail.c $(call libs_for,server)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -Itests $(CFLAGS_ALL) -o $@ $< $(call libs_for,server) $(call syslibs_for,server) $(LDFLAGS_ALL) $(ALLOC_WRAP)
check-alloc: $(ALLOC_BIN)
	@tests/run-tests.sh $(BUILD) $(ALLOC_BIN)
.PHONY: check-alloc

test-bin: $(TEST_BINS) $(ALLOC_BIN) $(BUILD)/elliott

# Unit and golden tests only (what the sanitizer build runs).
unit: test-bin
	@tests/run-tests.sh $(BUILD) $(TEST_BINS) $(ALLOC_BIN)

# Everything: unit and golden tests, then the end-to-end suites against the binary.
check: test-bin
	@tests/run-tests.sh $(BUILD) $(TEST_BINS) $(ALLOC_BIN) $(wildcard tests/e2e/*.sh)

# The engine's and the server's threads: their unit tests and the end-to-end
# suites that drive the server's event loops, watch thread and engine together
# (meant for TSAN=1; a report fails the test).
THREAD_TEST_BINS := $(call test_bins_of,engine) $(call test_bins_of,registry) $(call test_bins_of,server)
THREAD_E2E := tests/e2e/serve.sh tests/e2e/serve_models.sh tests/e2e/serve_limits.sh tests/e2e/serve_tls.sh tests/e2e/hostile.sh \
              tests/e2e/serve_model_damage.sh
check-threads: $(THREAD_TEST_BINS) $(BUILD)/elliott
	@TSAN_OPTIONS="halt_on_error=1 $${TSAN_OPTIONS:-}" tests/run-tests.sh $(BUILD) $(THREAD_TEST_BINS) $(THREAD_E2E)

# ---- benchmarks and tooling -------------------------------------------------------
bench: $(BUILD)/bench/kernels_bench
$(BUILD)/bench/kernels_bench: bench/kernels_bench.c $(call libs_for,kernels)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< $(call libs_for,kernels) $(call syslibs_for,kernels) $(LDFLAGS_ALL)

# One entry per source file, with the flags the rules above use (written by
# hand: no bear or compiledb needed).
compile_commands.json:
	@{ echo '['; first=1; for f in $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c)); do \
	    extra=; case $$f in *_avx2*) extra=" $(SIMDFLAGS)";; esac; \
	    [ $$first = 1 ] || echo ','; first=0; \
	    printf '  {"directory": "%s", "file": "%s", "command": "%s %s %s%s -c %s"}' \
	        "$(CURDIR)" "$$f" "$(CC)" "$(CPPFLAGS_ALL)" "$(CFLAGS_ALL)" "$$extra" "$$f"; \
	done; echo; echo ']'; } > $@

# ---- fuzzing (clang + libFuzzer) -----------------------------------------------
FUZZ_BUILD := build-fuzz
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 \
	    CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
	    $(addprefix $(FUZZ_BUILD)/fuzz/,$(FUZZ_TARGETS))

# Fuzz targets may use any layer below the CLI.
FUZZ_LIBS = $(call lib_of,hub) $(call libs_for,server)
$(FUZZ_BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIBS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< \
	    $(FUZZ_LIBS) $(call syslibs_for,server) $(SYSLIBS_hub) -pthread

# ---- benchmarks -------------------------------------------------------------------
# Constrained decoding on the Gemma 3 vocabulary: compile time and per-token mask time.
.PHONY: bench-grammar
$(BUILD)/bench/grammar_bench: bench/grammar_bench.c $(call libs_for,grammar_vocab)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< $(call libs_for,grammar_vocab) $(call syslibs_for,grammar_vocab) $(LDFLAGS_ALL)
bench-grammar: $(BUILD)/bench/grammar_bench
	$(BUILD)/bench/grammar_bench tests/data/vocab-gemma3.gguf

clean:
	rm -rf build build-san build-tsan build-fuzz build-clang compile_commands.json

# ---- version, install, uninstall -----------------------------------------------
# The version is written once, in VERSION; a git checkout adds `git describe` (set
# ELLIOTT_GIT= for a build that must not depend on the checkout, as the Debian one).

VERSION := $(shell cat VERSION)
ELLIOTT_GIT ?= $(shell git describe --always --dirty 2>/dev/null)
VERSION_STRING := $(VERSION)$(if $(ELLIOTT_GIT), (git $(ELLIOTT_GIT)))

# Rewritten only when the string changes, so that an unchanged version rebuilds nothing.
$(BUILD)/version.h: FORCE
	@mkdir -p $(@D)
	@printf '#define ELLIOTT_VERSION "%s"\n' '$(VERSION_STRING)' >$@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/obj/cli/main.c.o: $(BUILD)/version.h
$(BUILD)/obj/cli/main.c.o: CPPFLAGS_ALL += -include $(BUILD)/version.h
.PHONY: FORCE install uninstall
FORCE:

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/elliott
INSTALL ?= install
INSTALL_DOCS := README.md docs/api.md docs/commands.md docs/architecture.md docs/performance.md

# Order-only: `make && sudo make install` must not rebuild as root (root's view of the
# git checkout, hence the version string, may differ).
install: | $(BUILD)/elliott
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 755 $(BUILD)/elliott $(DESTDIR)$(BINDIR)/elliott
	$(INSTALL) -m 644 man/elliott.1 $(DESTDIR)$(MANDIR)/man1/elliott.1
	$(INSTALL) -m 644 $(INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 644 models/README.md $(DESTDIR)$(DOCDIR)/models.md

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/elliott $(DESTDIR)$(MANDIR)/man1/elliott.1 \
	    $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(INSTALL_DOCS)) models.md)
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
