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
	$(BIN)/pip install -q -e ".[train,export,ort,dev,triton]" $(TORCH_PIN)
	# tests/test_triton.py: the Triton server inside nvidia-pytriton's wheel (--no-deps: its numpy<2 pin would
	# downgrade the venv), and numpy<2 + onnxruntime for its Python backend stub, which is built against numpy 1
	# (x86-64 with glibc 2.35+ only: elsewhere the test skips with its reason)
	$(BIN)/pip install -q --no-deps nvidia-pytriton==0.7.0 || echo "no nvidia-pytriton wheel here"
	$(PY) -m venv $(VENV)/triton-stub && $(VENV)/triton-stub/bin/pip install -q numpy==1.26.4 onnxruntime==1.32.0 \
		|| echo "no Python environment for Triton's stub here"
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
