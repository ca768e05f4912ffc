# One image for every VisionNet process; the command picks the role (docker-compose.yml).
# TORCH=cpu (the default, image visionnet:cpu): torch's CPU build, from PyTorch's CPU
# index (PyPI's Linux wheel of the same version is the CUDA build, several GB more);
# the pin is pyproject's `cpu` extra. TORCH=gpu (visionnet:gpu): the `gpu` extra, CUDA.
FROM python:3.11-slim
ARG TORCH=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY visionnet visionnet
COPY web web
COPY workers workers
COPY training training
RUN if [ "$TORCH" = cpu ]; then index="--extra-index-url $TORCH_CPU_INDEX"; else index=""; fi \
 && pip install --no-cache-dir $index -e ".[${TORCH}]"
ENV VISIONNET_DATA_DIR=/var/lib/visionnet
VOLUME /var/lib/visionnet
ENTRYPOINT ["visionnet"]
