# outrigger-webhook: the mutating admission webhook that injects Outrigger's sidecars. Built by
# `make image-outrigger-webhook` from a context holding the static binary; FROM scratch: no shell, nothing
# to write (the config and the serving certificate are mounted read-only).
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="outrigger-webhook" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects parameterized sidecars (https-proxy, topz, config-sync, git-sync, shard-ambassador) into pods" \
      org.opencontainers.image.source="https://github.com/outrigger-dev/outrigger" \
      org.opencontainers.image.url="https://github.com/outrigger-dev/outrigger" \
      org.opencontainers.image.documentation="https://github.com/outrigger-dev/outrigger/blob/main/README.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Outrigger"
# CONFIG_FILE: the injector's config file (reloaded when it changes; "" = built-in defaults only), a mounted
# ConfigMap
ENV CONFIG_FILE="/etc/outrigger/config.yaml"
# CERT_DIR: directory holding the serving certificate and key (reloaded when they change), a mounted Secret
ENV CERT_DIR="/etc/outrigger/certs"
# CERT_NAME: serving certificate file name in CERT_DIR
ENV CERT_NAME="tls.crt"
# KEY_NAME: serving key file name in CERT_DIR
ENV KEY_NAME="tls.key"
# LISTEN_HOST: address the webhook listens on ("" = all)
ENV LISTEN_HOST=""
# WEBHOOK_PORT: HTTPS port for admission reviews (path /inject)
ENV WEBHOOK_PORT="9443"
# MIN_TLS_VERSION: lowest TLS version accepted: 1.2 or 1.3
ENV MIN_TLS_VERSION="1.2"
# HEALTH_PORT: plain-HTTP port for /healthz and /readyz
ENV HEALTH_PORT="8081"
# METRICS_PORT: plain-HTTP port for /metrics (0 = off)
ENV METRICS_PORT="8080"
# FAILURE_POLICY: the failurePolicy the webhook is registered with (the chart sets it): Fail denies a pod
# whose namespace cannot be read, Ignore admits it without the namespace's defaults and says so
ENV FAILURE_POLICY="Fail"
# POD_NAMESPACE: the injector's own namespace, never injected (set from the downward API): the chart sets it
ENV POD_NAMESPACE=""
# CERT_MODE: where the serving certificate comes from: files (CERT_DIR, e.g. a Secret written by cert-manager) or self-managed (the webhook creates and rotates it in CERT_SECRET and keeps WEBHOOK_CONFIG_NAME's caBundle current)
ENV CERT_MODE="files"
# CERT_SECRET: self-managed: the Secret in POD_NAMESPACE holding the CA and the serving certificate; the Lease that elects the rotating replica has the same name
ENV CERT_SECRET="outrigger-webhook-tls"
# WEBHOOK_CONFIG_NAME: self-managed: the MutatingWebhookConfiguration whose caBundle is kept current
ENV WEBHOOK_CONFIG_NAME="outrigger"
# SERVICE_NAME: self-managed: the Service the API server calls; the serving certificate names <service>.<POD_NAMESPACE>.svc
ENV SERVICE_NAME="outrigger-webhook"
# CERT_EXTRA_SANS: self-managed: more DNS names or IP addresses for the serving certificate, comma-separated
# (e.g. when the API server calls the webhook by URL)
ENV CERT_EXTRA_SANS=""
# CA_VALIDITY: self-managed: lifetime of a new CA (renewed after two thirds of it)
ENV CA_VALIDITY="43800h"
# CERT_VALIDITY: self-managed: lifetime of a new serving certificate (renewed after two thirds of it)
ENV CERT_VALIDITY="2160h"
# CHECK_NAMESPACE: check instead of serving: create a server-side dry-run pod asking for topz in this
# namespace; exit 0 if the API server returns it injected, else 1 (the chart's helm test)
ENV CHECK_NAMESPACE=""
# admission reviews over HTTPS (the API server calls https://<service>:443/inject, mapped to this port)
EXPOSE 9443
# /healthz and /readyz, plain HTTP, for the kubelet's probes
EXPOSE 8081
# /metrics, plain HTTP, for Prometheus
EXPOSE 8080
USER 65532:65532
COPY outrigger-webhook /outrigger-webhook
ENTRYPOINT ["/outrigger-webhook"]
