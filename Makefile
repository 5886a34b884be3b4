# The two commands that must always work on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU torch from the machine's local wheel; any other request can pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test install clean lint

$(STAMP): pyproject.toml setup.cfg Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[train,export,ort,dev]" $(TORCH_PIN)
	# tensorrt-stubs types the TensorRT 10 API for mypy; its 'tensorrt' dependency is a download stub
	$(BIN)/pip install -q --no-deps tensorrt-stubs
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m jetgen.demo --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Python 3.6 (JetPack 4) for everything that runs on a board: the list lives in the test
lint: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_runtime_torchfree.py -k "python36 or click"

clean:
	rm -rf $(VENV) out build *.egg-info
