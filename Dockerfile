# Worker container for Dataflow (--sdk_container_image): Beam's Python 3.11 SDK image with this package and
# TensorFlow installed once, instead of on every worker at start-up from --setup_file (minutes per worker).
#
#   docker build -t europe-docker.pkg.dev/my-project/recsys/worker:0.1.0 .
#   docker push europe-docker.pkg.dev/my-project/recsys/worker:0.1.0
#   python -m jobs.batch_recommend ... --runner DataflowRunner \
#       --sdk_container_image europe-docker.pkg.dev/my-project/recsys/worker:0.1.0
FROM apache/beam_python3.11_sdk:2.77.0

# recsys_core selects Keras 2 itself; set here too for any process that imports TensorFlow first.
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/recsys
COPY setup.py README.md train.py ./
COPY recsys_core recsys_core
COPY jobs jobs
RUN pip install --no-cache-dir ".[gcp]" && python -c "import recsys_core, tensorflow_recommenders, jobs.batch_recommend"

# The SDK harness is the image's own entry point (/opt/apache/beam/boot).
