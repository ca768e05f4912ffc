# One image for every VisionNet process; the command picks the role.
FROM python:3.11-slim
ARG TORCH=cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY visionnet visionnet
COPY web web
COPY workers workers
COPY training training
RUN pip install --no-cache-dir -e ".[${TORCH}]"
ENV VISIONNET_DATA_DIR=/var/lib/visionnet
VOLUME /var/lib/visionnet
ENTRYPOINT ["visionnet"]
