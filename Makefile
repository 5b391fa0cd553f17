# valley — build, set-up, tests, demo, benchmarks.
# `make demo` and `make check` install missing Debian packages themselves (make deps).

PREFIX   ?= /usr/local
CC       := mpicc
NC_MPI   := /usr/lib/x86_64-linux-gnu/netcdf/mpi
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-pthread
# No -march: one binary for every x86-64 node; the kernels are compiled for AVX-512 and
# AVX2 inside it and chosen at run time (include/valley/cpu.h, doc/performance.md).
# CFLAGS on the command line (make CFLAGS=-O3) replace this default only: the flags below are
# added with override.
CFLAGS   ?= -O3 -g
# OpenMP (GCC's libgomp): threads of a rank's kernels, parallel.threads (include/valley/cpu.h)
override CFLAGS  += -fopenmp
override LDFLAGS += -fopenmp
override CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Iinclude -I$(NC_MPI)/include -I$(BLAS_INC) \
            $(shell pkg-config --cflags cairo 2>/dev/null)
LDLIBS   := -L/usr/lib/x86_64-linux-gnu -lnetcdf_mpi -lscalapack-openmpi -llapacke -lopenblas -lz -lprotobuf-c \
            $(shell pkg-config --libs cairo 2>/dev/null) -lm
ifeq ($(SANITIZE),1)
override CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
BUILD    := build/san
BIN      := build/san/valley
else
BUILD    := build/opt
BIN      := bin/valley
endif

VERSION    := 0.1.0
GIT_COMMIT := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
# The commit goes into a generated header, rewritten only when it changes, so the
# files that print it are rebuilt after every commit and nothing else is.
override CFLAGS += -DVALLEY_VERSION='"$(VERSION)"' -I$(BUILD)
VERSIONED  := $(patsubst src/%.c,$(BUILD)/%.o,$(shell grep -l VALLEY_GIT_COMMIT src/*.c))

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
# ONNX's protobuf schema, compiled to C at build time from Debian's copy (libonnx-dev)
ONNX_PROTO := /usr/include/onnx/onnx.proto
GEN      := $(BUILD)/gen
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/%.o) $(GEN)/onnx.pb-c.o
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# Debian packages: build, run, and test-time (python3-torch, python3-netcdf4, python3-xarray are test-only).
DEB_PKGS := make gcc pkg-config bc zlib1g-dev openmpi-bin libopenmpi-dev libopenblas-dev liblapacke-dev \
            libscalapack-openmpi-dev libnetcdf-mpi-dev netcdf-bin libcairo2-dev \
            protobuf-c-compiler libprotobuf-c-dev libonnx-dev python3-onnx \
            dataset-fashion-mnist python3 python3-numpy python3-torch python3-netcdf4 python3-sklearn python3-xarray \
            slurm-wlm munge

.PHONY: all deps check check-slurm scaling sim fuzz reliability demo bench clean install tests FORCE
all: $(BIN) tests

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi

# The flags go into a stamp rewritten only when they change: a build with other CFLAGS
# (say -march=native, or none) recompiles everything instead of mixing objects.
$(BUILD)/cflags.txt: FORCE | $(BUILD)
	@command -v $(CC) >/dev/null || { echo "make: $(CC) not found (Debian's libopenmpi-dev): run 'make deps' (or make check / make demo) first" >&2; exit 2; }
	@echo '$(CC) $(CFLAGS)' > $@.new
	@cmp -s $@.new $@ && rm -f $@.new || mv $@.new $@

$(BUILD)/%.o: src/%.c $(wildcard include/valley/*.h src/*.h) $(BUILD)/cflags.txt | $(BUILD)
	$(CC) $(CFLAGS) -c $< -o $@

# A plain `make` on a machine without the packages says what to do instead of naming a file.
$(ONNX_PROTO):
	@echo "make: $@ is missing (Debian's libonnx-dev): run 'make deps' (or make check / make demo) first" >&2; exit 2
$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h: $(ONNX_PROTO)
	mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)
$(GEN)/onnx.pb-c.o: $(GEN)/onnx.pb-c.c $(BUILD)/cflags.txt
	$(CC) $(filter-out -Wall -Wextra,$(CFLAGS)) -c $< -o $@
$(BUILD)/onnx.o: $(GEN)/onnx.pb-c.h

$(BUILD)/gitversion.h: FORCE | $(BUILD)
	@echo '#define VALLEY_GIT_COMMIT "$(GIT_COMMIT)"' > $@.new
	@cmp -s $@.new $@ && rm -f $@.new || mv $@.new $@
$(VERSIONED): $(BUILD)/gitversion.h
FORCE:

$(BUILD)/libvalley.a: $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^

$(BIN): $(BUILD)/main.o $(BUILD)/libvalley.a | bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvalley.a $(BUILD)/cflags.txt $(wildcard include/valley/*.h tests/unit/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libvalley.a $(LDLIBS)

tests: $(TEST_BIN)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libvalley.a $(BUILD)/cflags.txt $(wildcard include/valley/*.h bench/*.h) | $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libvalley.a $(LDLIBS)

$(BUILD) $(BUILD)/tests $(BUILD)/bench bin:
	mkdir -p $@

check: deps
	$(MAKE) all
	BUILD=$(BUILD) VALLEY=$(abspath $(BIN)) tests/run.sh

# The jobs/ scripts on a real single-node Slurm started by the test (also part of `make check`).
check-slurm: deps
	$(MAKE) all
	BUILD=$(BUILD) VALLEY=$(abspath $(BIN)) tests/slurm/run.sh

# Strong and weak scaling measured here (1, 2, 4 ranks) -> doc/scaling.md figures and table.
scaling: deps
	$(MAKE) all
	BUILD=$(BUILD) VALLEY=$(abspath $(BIN)) jobs/scaling/run.sh

# valley's communication skeleton under SimGrid SMPI, 16..1024 simulated ranks.
sim: deps
	$(MAKE) all
	BUILD=$(BUILD) jobs/scaling/sim/run.sh

# libFuzzer targets for every reader of outside data (clang, installed when missing),
# FUZZ_SECONDS per target; the corpus they leave is replayed by make check (rel_corpus).
fuzz: deps
	$(MAKE) $(BIN)
	tests/fuzz/run.sh $(or $(FUZZ_SECONDS),60)

# kill -9 one rank of running jobs at random moments, KILL_TRIALS times; every file checked,
# every resume compared bit for bit with an uninterrupted run (doc/reliability.md).
reliability: deps
	$(MAKE) $(BIN)
	tests/reliability/kill_campaign.sh $(or $(KILL_TRIALS),50)

# DEMO_SET='--set run.overwrite=true' recomputes every stage of an earlier demo (another deck's
# output/demo is refused otherwise: valley-run.txt).
demo: deps
	$(MAKE) $(BIN)
	bin/valley prepare fashion-mnist
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_odls_base_sigkill_timeout=60 \
	  mpirun --oversubscribe -np 2 bin/valley run input/demo.ini --out output/demo $(DEMO_SET)

bench: deps
	$(MAKE) all $(BENCH_BIN)
	BUILD=$(BUILD) bench/run.sh

install: $(BIN)
	install -D -m 755 $(BIN) $(PREFIX)/bin/valley

clean:
	rm -rf build bin
