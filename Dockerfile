# The driftline worker and sink, for users with Docker (docker-compose.yml). Python 3.11, pinned deps.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY driftline ./driftline
COPY schemas ./schemas
COPY sinks ./sinks
COPY streams ./streams
RUN pip install --no-cache-dir -c constraints.txt .
ENV DRIFTLINE_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["driftline"]
CMD ["--help"]
