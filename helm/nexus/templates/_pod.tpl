{{/* The pod template shared by the StatefulSet (standalone) and the Deployment (cluster). */}}
{{- define "nexus.podTemplate" -}}
{{- $secrets := include "nexus.secretsPath" . -}}
metadata:
  labels:
    {{- include "nexus.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A change of the settings or of the chart's Secret inputs rolls the pods.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    checksum/secret: {{ toJson (dict "auth" .Values.auth "metricsToken" .Values.metricsToken "providers" .Values.providers "nats" .Values.cluster.nats) | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "nexus.serviceAccountName" . }}
  automountServiceAccountToken: false
  # Service links would add NEXUS_WS_PORT=tcp://... and the like for a release named
  # "nexus" (or any nexus-* Service in the namespace), and the server refuses unknown
  # NEXUS_* variables.
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  # preStop (drainDelay) + the server's stop (up to 2 * shutdownTimeout + 5 s)
  terminationGracePeriodSeconds: {{ include "nexus.gracePeriod" . }}
  containers:
    - name: nexus
      image: {{ include "nexus.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["nexus", "serve"]
      ports:
        - name: ws
          containerPort: {{ .Values.server.port }}
          protocol: TCP
        - name: http
          containerPort: {{ .Values.server.httpPort }}
          protocol: TCP
      env:
        - name: NEXUS_CONFIG
          value: {{ printf "%s/nexus.toml" (include "nexus.configPath" .) | quote }}
        - name: NEXUS_HOST
          value: "0.0.0.0"
        - name: NEXUS_HTTP_HOST
          value: "0.0.0.0"
        - name: NEXUS_PORT
          value: {{ .Values.server.port | quote }}
        - name: NEXUS_HTTP_PORT
          value: {{ .Values.server.httpPort | quote }}
        - name: NEXUS_DATA_DIR
          value: {{ include "nexus.dataPath" . | quote }}
        - name: NEXUS_DRAIN_DELAY
          value: {{ include "nexus.number" .Values.server.drainDelay | quote }}
        - name: NEXUS_SHUTDOWN_TIMEOUT
          value: {{ include "nexus.number" .Values.server.shutdownTimeout | quote }}
        - name: NEXUS_LOG_FORMAT
          value: {{ .Values.server.logFormat | quote }}
        - name: NEXUS_PRINT_DEV_TOKEN
          value: "false"
        {{- if eq .Values.mode "cluster" }}
        - name: NEXUS_CLUSTER_NODE_ID  # the pod's name: presence and heartbeats per node
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        {{- end }}
        - name: {{ include "nexus.authFileEnv" . }}
          value: {{ printf "%s/auth/%s" $secrets (include "nexus.authKey" .) | quote }}
        {{- with include "nexus.metricsTokenSecret" . }}
        - name: NEXUS_METRICS_TOKEN
          valueFrom:
            secretKeyRef:
              {{- toYaml (fromJson .) | nindent 14 }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # Started: the HTTP API answers. Live: the event loop answers on the WebSocket port
      # (no dependency is consulted). Ready: the store is open, not draining, and in cluster
      # mode the engine is connected.
      startupProbe:
        httpGet: {path: /healthz, port: http}
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: ws}
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      lifecycle:
        preStop:
          # SIGUSR1 (through tini) starts the drain: /readyz answers 503 and new WebSocket
          # upgrades are refused while the pod still serves; the SIGTERM after this hook
          # then closes at once, the drain delay having passed.
          exec:
            command: ["/bin/sh", "-c", {{ printf "kill -USR1 1; sleep %s" (include "nexus.number" .Values.server.drainDelay) | quote }}]
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: {{ include "nexus.dataPath" . }}
        - name: tmp
          mountPath: /tmp
        - name: config
          mountPath: {{ include "nexus.configPath" . }}
          readOnly: true
        - name: secrets
          mountPath: {{ $secrets }}
          readOnly: true
  volumes:
    {{- if or (eq .Values.mode "cluster") (not .Values.persistence.enabled) }}
    - name: data
      emptyDir:
        sizeLimit: {{ eq .Values.mode "cluster" | ternary .Values.cluster.scratchSizeLimit .Values.persistence.size }}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    - name: config
      configMap:
        name: {{ include "nexus.fullname" . }}
    - name: secrets
      projected:
        defaultMode: 0440
        sources:
          - secret:
              name: {{ include "nexus.authSecretName" . }}
              items:
                - key: {{ include "nexus.authKey" . }}
                  path: {{ printf "auth/%s" (include "nexus.authKey" .) }}
          {{- range $name := keys .Values.providers | sortAlpha }}
          {{- with include "nexus.providerKeySource" (dict "root" $ "name" $name "provider" (get $.Values.providers $name)) }}
          {{- $src := fromJson . }}
          - secret:
              name: {{ $src.name }}
              items:
                - key: {{ $src.key }}
                  path: {{ printf "providers/%s" $name }}
          {{- end }}
          {{- end }}
          {{- if and (eq .Values.mode "cluster") .Values.cluster.nats.credentialsSecret }}
          - secret:
              name: {{ .Values.cluster.nats.credentialsSecret }}
              items:
                - key: {{ .Values.cluster.nats.credentialsKey }}
                  path: {{ printf "nats/%s" .Values.cluster.nats.credentialsKey }}
          {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
