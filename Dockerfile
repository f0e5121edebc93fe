FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system --no-create-home caseflow
USER caseflow
# The command is set per service in docker-compose.yml.
