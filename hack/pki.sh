#!/usr/bin/env bash
# Creates the local cluster's certificates and keys with openssl (source it; used by cluster-up.sh).
# Everything is written to a temporary folder first and moved into place as a whole, so a crash
# half-way never leaves a partial PKI behind.

# issue_cert DIR NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
issue_cert() {
  local dir=$1 name=$2 subj=$3 eku=$4 sans=${5:-}
  local ext="extendedKeyUsage=$eku"$'\n'"keyUsage=critical,digitalSignature,keyEncipherment"
  [[ -n $sans ]] && ext+=$'\n'"subjectAltName=$sans"
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -out "$dir/$name.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm -f "$dir/$name.csr"
}

# make_pki DIR: creates DIR with a CA, serving and client certificates and the ServiceAccount key pair.
make_pki() {
  local dir=$1 tmp="$1.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp" && chmod 700 "$tmp"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=dask-operator-local-ca" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
  issue_cert "$tmp" apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1,IP:10.244.0.1"
  issue_cert "$tmp" admin "/O=system:masters/CN=admin" clientAuth
  issue_cert "$tmp" controller-manager "/CN=system:kube-controller-manager" clientAuth
  issue_cert "$tmp" scheduler "/CN=system:kube-scheduler" clientAuth
  issue_cert "$tmp" dask-operator "/CN=dask-operator" clientAuth
  issue_cert "$tmp" kubelet "/O=system:nodes/CN=system:node:node1" clientAuth
  issue_cert "$tmp" kube-proxy "/CN=system:kube-proxy" clientAuth
  issue_cert "$tmp" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/sa.key" 2>/dev/null
  openssl pkey -in "$tmp/sa.key" -pubout -out "$tmp/sa.pub" 2>/dev/null
  rm -rf "$dir" && mv "$tmp" "$dir"
}

# write_kubeconfig FILE SERVER CA CERT KEY: a kubeconfig with embedded credentials, written atomically.
write_kubeconfig() {
  local file=$1 server=$2 ca=$3 cert=$4 key=$5
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$ca")
users:
- name: user
  user:
    client-certificate-data: $(base64 -w0 <"$cert")
    client-key-data: $(base64 -w0 <"$key")
contexts:
- name: local
  context: {cluster: local, user: user}
current-context: local
EOF
  chmod 600 "$file.tmp" && mv "$file.tmp" "$file"
}
