# The series' commands. `make lab` opens it; `make test` runs every test (CI runs exactly this).
# Both create .venv on first use, with the tested pins in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MNIST_GZ ?= ../shared/data/mnist
MNIST_RAW := data/MNIST/raw
PYTEST_ARGS ?=

.PHONY: lab test test-main test-colab data seeds alignment recurrent bench bench-cnn bench-pipeline notebooks timings reproduce slides clean-venv gpu-check

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

## Open the series in JupyterLab (ipywidgets included). As root (a container) it adds --allow-root; with no
## display (a server, a container) it opens no browser and prints the address to open instead.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root) $(if $(DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser)
lab: $(VENV)/.installed data
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_FLAGS) $(LAB_ARGS)

## Every test: unit tests and every notebook top to bottom at the smoke size (nbval), then the same unit
## tests and the widget and process notebooks with Colab's versions of ipywidgets, psutil, numpy, matplotlib.
test: test-main test-colab

test-main: $(VENV)/.installed data
	SG_SIZE=smoke $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=900 -q $(PYTEST_ARGS)

COLAB_VENV ?= .venv-colab
COLAB_NOTEBOOKS := notebooks/02_dni.ipynb notebooks/03_cdni.ipynb notebooks/03b_playground.ipynb notebooks/06_full_unlock.ipynb notebooks/09_asynchronous.ipynb \
	notebooks/10_after_dni.ipynb
$(COLAB_VENV)/.installed: pyproject.toml constraints-colab.txt
	test -x $(COLAB_VENV)/bin/python || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet -c constraints-colab.txt -e '.[dev]'
	touch $@

test-colab: $(COLAB_VENV)/.installed data
	SG_SIZE=smoke $(COLAB_VENV)/bin/python -m pytest tests $(COLAB_NOTEBOOKS) --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=900 -q --deselect tests/test_browser.py --deselect tests/test_playground_browser.py $(PYTEST_ARGS)

## Lay out MNIST where torchvision finds it, from a local copy of the .gz files if there is one
## (these machines have no internet; elsewhere torchvision downloads it on first use).
data:
	@if [ ! -f $(MNIST_RAW)/t10k-labels-idx1-ubyte ] && [ -d $(MNIST_GZ) ]; then \
		mkdir -p $(MNIST_RAW); \
		for f in $(MNIST_GZ)/*.gz; do gunzip -c "$$f" > "$(MNIST_RAW)/$$(basename "$$f" .gz)"; done; \
		echo "MNIST placed in $(MNIST_RAW) from $(MNIST_GZ)"; \
	fi

clean-venv:
	rm -rf $(VENV) $(COLAB_VENV)

## On a CUDA GPU: a few dozen steps of everything that touches the device, PASS/FAIL per line (exits 0
## with a note where there is no GPU). Please run it first on a new GPU and send its output with any report.
gpu-check: $(VENV)/.installed
	$(PY) -m helpers.gpu_check

## Median ms per training step, backprop vs DNI vs cDNI vs DGL, with the ideal ratios (prints figures only).
bench: $(VENV)/.installed data
	$(PY) benchmarks/step_time.py

## The CIFAR-10 CNN's step time: float32 vs channels-last vs bfloat16 autocast (backprop, DNI, cDNI).
bench-cnn: $(VENV)/.installed
	$(PY) benchmarks/cnn_step_time.py

## Samples/s of the locked vs decoupled pipeline, one process per stage (prints figures only; run it alone).
bench-pipeline: $(VENV)/.installed data
	OMP_NUM_THREADS=1 $(PY) benchmarks/pipeline_throughput.py

## Re-execute every notebook in place at $(SG_SIZE) (default quick), for committed outputs.
SG_SIZE ?= quick
## Ends with each notebook's wall time against the budget (quick: 8 min each, 45 in all), kept in
## results/timings_<size>.json; `make timings` prints the last table without running anything.
notebooks: $(VENV)/.installed data
	SG_SIZE=$(SG_SIZE) TQDM_DISABLE=1 $(PY) scripts/run_notebooks.py

timings: $(VENV)/.installed
	SG_SIZE=$(SG_SIZE) $(PY) scripts/run_notebooks.py --times-only

## Render every notebook, outputs included, to reveal.js slides in build/slides/ (open the .slides.html files)
## that work with no network: reveal.js and MathJax come from the npm registry into build/slides/vendor/ once.
slides: $(VENV)/.installed
	$(PY) scripts/slides.py --check
	$(PY) scripts/slides.py --build

## The MNIST FCN methods over seeds 0-2 at $(SG_SIZE) (quick: every 3-layer method of 01-06; long: the reference
## tier the notebooks load, r2rt's 25k-iteration schedule: Table 1's FCN block at 3-6 layers, every other FCN method
## at 3, DNI's synthesizer depth searched on a validation split; two one-thread workers, CPU hours, resumable run by
## run and within a run); results/seeds_<size>.json and results/dni_search_<size>.json.
seeds: $(VENV)/.installed data
	SG_SIZE=$(SG_SIZE) TQDM_DISABLE=1 $(PY) scripts/seeds.py

## Which alignment tracks accuracy (issue 28): the 3-layer FCN's methods over seeds 0-2 with the update probe;
## results/alignment_<size>.json, read by notebooks 03-05 (helpers.alignment). One thread, resumable run by run.
alignment: $(VENV)/.installed data
	SG_SIZE=$(SG_SIZE) TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PY) scripts/alignment.py

## The long recurrent tier (issue 27) at $(SG_SIZE): copy and repeat-copy curricula at T = 2-5 for truncated BPTT, DNI
## and DNI + Aux over seeds 0-2; two one-thread workers, CPU hours at the long size, resumable run by run and within a
## run; results/recurrent_<size>.json, read by notebook 08 (helpers.recurrent_tier). `--report` prints what is done.
recurrent: $(VENV)/.installed
	SG_SIZE=$(SG_SIZE) TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PY) scripts/recurrent.py

## Re-run every notebook and the seeds experiment at $(SG_SIZE), then render results/README.md (published numbers beside ours).
reproduce: notebooks seeds
	$(PY) scripts/results_table.py
