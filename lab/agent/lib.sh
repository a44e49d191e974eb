# Functions of the lab node agent (busybox ash). Sourced by /init; the tests source it on
# the host with `busybox sh` to check each function alone.

say() { echo "LAB-AGENT: $*"; }

# utc_now: this node's clock (from the RTC at boot, whole seconds; no NTP in the lab).
utc_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# epoch_now: this node's clock as seconds.microseconds since the epoch (busybox date has
# no %N; adjtimex reads the kernel's time with microseconds).
epoch_now() { adjtimex | awk '/tv_sec/ { s = $2 } /tv_usec/ { u = $2 } END { printf "%d.%06d\n", s, u }'; }

# cert_verdict CA CRT: "ok" if CRT verifies against CA now, by this node's clock; else
# openssl's first error line with the node's clock and the certificate's validity start,
# so a clock skew reads as one ("error 9 at 0 depth lookup: certificate is not yet valid").
cert_verdict() {
    local out reason
    if out=$(openssl verify -CAfile "$1" "$2" 2>&1); then echo ok; return 0; fi
    reason=$(echo "$out" | grep -m 1 '^error [0-9]')
    echo "${reason:-$(echo "$out" | tail -n 1)} (node clock $(utc_now)," \
        "$(openssl x509 -noout -startdate -in "$2" 2>/dev/null || echo 'certificate unreadable'))"
}

# cmdline_arg NAME [CMDLINE]: the value of NAME= on the kernel command line.
cmdline_arg() {
    local word
    for word in ${2:-$(cat /proc/cmdline)}; do
        case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
    done
    return 1
}

# talos_expand_url URL MAC UUID SERIAL HOSTNAME
# Like Talos: parse the query, replace ${mac} ${uuid} ${serial} ${hostname} inside query
# values, then re-encode the query with keys sorted (Go url.Values.Encode, QueryEscape:
# unreserved bytes kept, space as +, the rest %XX). The part before '?' is kept as is.
talos_expand_url() {
    case "$1" in *\?*) ;; *) echo "$1"; return 0 ;; esac
    printf '%s' "${1#*\?}" | awk -v base="${1%%\?*}" -v mac="$2" -v uuid="$3" \
        -v serial="$4" -v host="$5" '
    function unhex(h) { return ("0x" h) + 0 }
    function decode(s,   out, i, c) {
        out = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (c == "+") c = " "
            else if (c == "%" && substr(s, i + 1, 2) ~ /^[0-9A-Fa-f][0-9A-Fa-f]$/) {
                c = sprintf("%c", unhex(substr(s, i + 1, 2))); i += 2
            }
            out = out c
        }
        return out
    }
    function encode(s,   out, i, c) {
        out = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (c ~ /[A-Za-z0-9_.~-]/) out = out c
            else if (c == " ") out = out "+"
            else out = out sprintf("%%%02X", ord[c])
        }
        return out
    }
    function subst(v, name, value,   pat) {
        pat = "${" name "}"
        while (index(v, pat) > 0)
            v = substr(v, 1, index(v, pat) - 1) value substr(v, index(v, pat) + length(pat))
        return v
    }
    BEGIN { for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i }
    {
        n = split($0, parts, "&"); m = 0
        for (i = 1; i <= n; i++) {
            if (parts[i] == "") continue
            eq = index(parts[i], "=")
            if (eq) { k = decode(substr(parts[i], 1, eq - 1)); v = decode(substr(parts[i], eq + 1)) }
            else { k = decode(parts[i]); v = "" }
            v = subst(v, "mac", mac); v = subst(v, "uuid", uuid)
            v = subst(v, "serial", serial); v = subst(v, "hostname", host)
            m++; key[m] = k; val[m] = v
        }
        # stable insertion sort by key (Go sorts keys, keeps the order of repeated keys)
        for (i = 2; i <= m; i++) {
            kk = key[i]; vv = val[i]
            for (j = i - 1; j >= 1 && key[j] > kk; j--) { key[j + 1] = key[j]; val[j + 1] = val[j] }
            key[j + 1] = kk; val[j + 1] = vv
        }
        out = ""
        for (i = 1; i <= m; i++) out = out (i > 1 ? "&" : "") encode(key[i]) "=" encode(val[i])
        print base "?" out
    }'
}

# yaml_flatten < FILE: print "a.b.c=value" for each scalar of a block-style YAML file
# (good enough for Talos machine configs: mappings with 4-space indentation).
yaml_flatten() {
    awk '
    /^---/ { depth = 0; next }
    /^[ \t]*(#|$)/ { next }
    {
        match($0, /^ */); ind = RLENGTH; line = substr($0, ind + 1)
        if (line ~ /^- /) next
        c = index(line, ":"); if (!c) next
        k = substr(line, 1, c - 1); v = substr(line, c + 1); sub(/^ +/, "", v); sub(/ +$/, "", v)
        if (v ~ /^".*"$/ || v ~ /^\047.*\047$/) v = substr(v, 2, length(v) - 2)
        while (depth > 0 && indent[depth] >= ind) depth--
        depth++; indent[depth] = ind; name[depth] = k
        if (v == "" || v == "|" || v == ">") next
        path = name[1]; for (i = 2; i <= depth; i++) path = path "." name[i]
        print path "=" v
    }'
}

# yaml_get KEY < FLAT: the first value of KEY in yaml_flatten output.
yaml_get() { awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }'; }

# varint_hex N: protobuf base-128 varint of N, as hex.
varint_hex() {
    local n=$1 out=""
    while [ "$n" -ge 128 ]; do out="$out$(printf '%02x' $(( (n & 127) | 128 )))"; n=$(( n >> 7 )); done
    echo "$out$(printf '%02x' "$n")"
}

# grpc_request_frame CSRFILE: a gRPC message frame (flag, 4-byte length, protobuf) holding
# CertificateRequest{bytes csr = 1}, as hex.
grpc_request_frame() {
    local body len msg
    body=$(xxd -p "$1" | tr -d '\n')
    len=$(( ${#body} / 2 ))
    msg="0a$(varint_hex "$len")$body"
    echo "00$(printf '%08x' $(( ${#msg} / 2 )))$msg"
}

# grpc_response_field N < HEX: the bytes of field N (length-delimited) of the protobuf
# message in the first gRPC frame of a response, as hex.
grpc_response_field() {
    awk -v want="$1" '
    function byte(pos) { return ("0x" substr(s, pos * 2 + 1, 2)) + 0 }
    { s = s $0 }
    END {
        total = length(s) / 2; p = 5; end = 5 + byte(1) * 16777216 + byte(2) * 65536 + byte(3) * 256 + byte(4)
        if (end > total) end = total
        while (p < end) {
            tag = byte(p); p++
            len = 0; shift = 1
            do { b = byte(p); p++; len += (b % 128) * shift; shift *= 128 } while (b >= 128)
            if (int(tag / 8) == want && tag % 8 == 2) { print substr(s, p * 2 + 1, len * 2); exit }
            p += len
        }
    }'
}
