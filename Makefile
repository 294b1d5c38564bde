# Two commands on a fresh machine: `make train` and `make test`. Both set up what is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/digits

.PHONY: install data train tune ensemble compare ablations test test-archs bench bench-photos bench-s3 gpu-check gpu-wheels lint clean clean-runs help cluster-up submit cluster-down cluster-run mlflow-ui

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The venv is (re)built when missing or older than requirements.txt / pyproject.toml.
# pip compiles every installed module to bytecode on one core; compileall does it on all
# of them (2 vCPUs: install 121 s -> 100 s). Bytecode is compiled here, not on first
# import, because an environment may set PYTHONDONTWRITEBYTECODE and never cache it.
# The one file skipped is torch's Python-3.12-only test helper, which pip leaves uncompiled too.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --no-compile -r requirements.txt
	$(PY) -m compileall -q -j 0 -x 'torch/testing/_internal/py312_intrinsics\.py' $(VENV)/lib/python*/site-packages
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)  ## build .venv with everything the jobs and tests need

$(DATA)/manifest.json: $(STAMP)
	$(PY) jobs/prepare_data.py --digits --out $(DATA)

data: $(DATA)/manifest.json  ## prepare the embedded default dataset (scikit-learn digits) into data/digits

train: data  ## train the full AlexNet on the embedded default, on the local CPUs
	$(PY) jobs/train.py --preset digits

tune: data  ## sweep lr x weight decay on the embedded default with Ray Tune (ARGS="..." adds flags)
	$(PY) jobs/tune.py --preset digits $(ARGS)

ensemble: data  ## train 7 members on the embedded default and assemble them (ARGS="..." adds flags)
	$(PY) jobs/ensemble.py --preset digits $(ARGS)

compare: data  ## train 5 networks on the embedded default, one MLflow parent run, and print the table (ARGS="..." adds flags)
	$(PY) jobs/compare.py --preset digits $(ARGS)

ablations: data  ## the paper's ablations of AlexNet on the embedded default, one MLflow parent run, and print the table (ARGS="..." adds flags)
	$(PY) jobs/compare.py --preset ablations $(ARGS)

bench: data  ## measure decode, augmentation, the Ray Data pipeline and the model step (writes bench.json)
	$(PY) jobs/bench.py --json bench.json --scaling

bench-s3: data  ## the pipeline with the shards in a local S3 server (moto) against the same shards on disk
	$(PY) tests/s3_server.py $(DATA) s3://bench/digits -- $(PY) jobs/bench.py --data s3://bench/digits \
		--compare-data $(DATA) --json bench-s3.json

data/photos/manifest.json: $(STAMP)
	$(PY) jobs/prepare_data.py --photos 4000 --out data/photos

bench-photos: data/photos/manifest.json  ## the same benchmark on photo-like JPEGs (windows of scikit-learn's sample photos)
	$(PY) jobs/bench.py --data data/photos --json bench-photos.json --scaling

# The GPU check runs where this project's .venv, Ray and MLflow are not, and no package
# registry is reachable: with the python found there (GPU_PY: .venv's if there is one,
# else python3), the project from this folder, and simplejpeg from .whl/ when a wheel was
# brought along (`make gpu-wheels`, run where a registry is reachable); else Pillow decodes.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_PYTHON_VERSION ?= 3.12
WHEELS := .whl

gpu-wheels:  ## download simplejpeg's wheel for the GPU machine's python (GPU_PYTHON_VERSION=3.12) into .whl/
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --implementation cp \
		--python-version $(GPU_PYTHON_VERSION) --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(WHEELS) $(shell grep -E '^simplejpeg==' requirements.txt)

gpu-check:  ## on a GPU machine, no Ray or MLflow needed: the GPU figures for docs/performance.md (ARGS="..." adds flags)
	@if ! $(GPU_PY) -c "import simplejpeg" 2>/dev/null && ls $(WHEELS)/simplejpeg-*.whl >/dev/null 2>&1; then \
		$(GPU_PY) -m pip install --quiet --no-index --no-deps --target $(WHEELS)/site $(WHEELS)/simplejpeg-*.whl \
		|| echo "[gpu-check] $(WHEELS)/ holds no simplejpeg wheel for this python: Pillow decodes"; fi
	PYTHONPATH="$(CURDIR):$(CURDIR)/$(WHEELS)/site$${PYTHONPATH:+:$$PYTHONPATH}" $(GPU_PY) jobs/gpu_check.py $(ARGS)

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest -q

test-archs: $(STAMP)  ## train every registered network one epoch through jobs/train.py (~7 min; not in make test)
	$(PY) -m pytest -q -m every_network tests/test_archs_job.py

# A local Ray head, and jobs submitted to it as on a real cluster. Ray 2.60 turns on token
# authentication whenever ~/.ray/auth_token exists (any local ray.init() writes one), and
# the `ray` CLI sends the token only when RAY_AUTH_MODE=token is set in its own environment:
# a plain `ray job submit` is then refused. Both sides get the setting here.
RAY      := RAY_AUTH_MODE=token $(VENV)/bin/ray
DASH     := http://127.0.0.1:8265
SUBMIT_ARGS := --epochs 1 --workers 2

cluster-up: $(STAMP)  ## start a local Ray head (token auth on) from the venv, so jobs run its python
	$(VENV)/bin/ray get-auth-token --generate > /dev/null
	PATH="$(abspath $(VENV))/bin:$$PATH" RAY_free_objects_period_milliseconds=0 $(RAY) start --head --dashboard-host 127.0.0.1 --disable-usage-stats

submit: data  ## submit jobs/train.py to the local head and follow its logs (ARGS="..." replaces the flags)
	$(RAY) job submit --address $(DASH) --working-dir . -- \
		python jobs/train.py --data $(abspath $(DATA)) $(or $(ARGS),$(SUBMIT_ARGS))

cluster-run: data  ## cluster-up, submit (logs followed) and cluster-down in one; the head stops even when the job fails
	$(MAKE) cluster-up
	$(MAKE) submit; status=$$?; $(MAKE) cluster-down; exit $$status

cluster-down:  ## stop the local Ray head
	$(VENV)/bin/ray stop

mlflow-ui: $(STAMP)  ## browse the runs: MLflow UI on the project's store at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath mlruns.db) \
		--default-artifact-root $(abspath mlruns) --host 127.0.0.1 --port 5000

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check alexnet jobs tests

# `clean` removes only what the targets above rebuild. Checkpoints and MLflow runs are
# work: clean-runs deletes them, and only with CONFIRM=yes.
clean:  ## remove what `make data`/`bench` rebuild: data/digits, data/photos, bench*.json (keeps runs, MLflow, .venv)
	rm -rf $(DATA) data/photos bench.json bench-photos.json

clean-runs:  ## delete every checkpoint (runs/) and every MLflow run and model (mlruns/, mlruns.db): CONFIRM=yes
	@if [ "$(CONFIRM)" != yes ]; then \
		echo "make clean-runs deletes runs/ (every checkpoint), mlruns/ and mlruns.db (every MLflow run, metric" \
			"and logged model, of every experiment, not only the demo's). It cannot be undone."; \
		echo "To go ahead: make clean-runs CONFIRM=yes"; exit 1; fi
	rm -rf runs mlruns mlruns.db
