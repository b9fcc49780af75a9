# shellcheck shell=bash
# A private test CA and a server certificate for 127.0.0.1 and localhost,
# generated with openssl, for the dependency scripts that serve TLS
# (postgres.sh, redis.sh). Source it after lib.sh; it only defines functions.

# ensure_server_cert DIR NAME : make sure DIR holds ca.pem (public), ca.key,
# server.pem and server.key (private, 0600), valid for at least a week more.
# Anything missing or about to expire is regenerated, CA included, so every
# client's CA file always matches the server. NAME goes into the subjects.
ensure_server_cert() {
	local dir=$1 name=$2
	if ! command -v openssl >/dev/null 2>&1; then
		apt_install openssl
	fi
	mkdir -p "$dir"
	chmod 0755 "$dir"
	if [[ -s $dir/ca.pem && -s $dir/server.pem && -s $dir/server.key ]] &&
		openssl x509 -checkend 604800 -noout -in "$dir/server.pem" >/dev/null 2>&1 &&
		openssl x509 -checkend 604800 -noout -in "$dir/ca.pem" >/dev/null 2>&1; then
		return 0
	fi
	log "generating a test CA and a server certificate for 127.0.0.1/localhost in $dir"
	local ext="$dir/server.ext" rc=0
	printf '%s\n' \
		'basicConstraints = critical, CA:FALSE' \
		'keyUsage = critical, digitalSignature, keyEncipherment' \
		'extendedKeyUsage = serverAuth' \
		'subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost' >"$ext"
	(
		umask 077
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
			-subj "/O=Event Aggregator/CN=$name test CA" \
			-addext 'basicConstraints = critical, CA:TRUE' \
			-addext 'keyUsage = critical, keyCertSign, cRLSign' \
			-keyout "$dir/ca.key" -out "$dir/ca.pem" &&
			openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
				-subj "/O=Event Aggregator/CN=$name 127.0.0.1" \
				-keyout "$dir/server.key" -out "$dir/server.csr" &&
			openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
				-CAcreateserial -days 825 -extfile "$ext" -out "$dir/server.pem"
	) >"$dir/openssl.log" 2>&1 || rc=$?
	if [[ $rc -ne 0 ]]; then
		log_tail "$dir/openssl.log"
		die "could not generate the TLS certificates in $dir"
	fi
	rm -f "$dir/server.csr" "$dir/ca.srl" "$ext"
	# Clients read the CA and the certificate; the keys stay private.
	chmod 0644 "$dir/ca.pem" "$dir/server.pem"
	chmod 0600 "$dir/ca.key" "$dir/server.key"
}
