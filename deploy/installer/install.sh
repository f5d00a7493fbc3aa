#!/bin/sh
# The nanovisor node installer: what the Helm chart's DaemonSet runs on every node.
#
#   install.sh install    binaries, shim config, ACL policy and checkpoint images onto the
#                         host; the runtime handler into containerd's config; containerd
#                         restarted (only if its config changed) and waited for; then the
#                         node labelled so the RuntimeClass schedules pods to it
#   install.sh uninstall  the reverse: label, containerd handler, files (drain the node's
#                         nanovisor pods first: their sandboxes lose their runtime)
#   install.sh pause      sleep until told to stop (the DaemonSet's long-running container)
#
# Settings come from the environment, which the chart's DaemonSet sets; the defaults below
# are the chart's defaults. The host's directories are mounted under HOST_ROOT at their host
# paths, and host commands (systemctl, containerd) run in the host's namespaces through
# HOST_EXEC (nsenter into PID 1's namespaces; the pod has hostPID).
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
HOST_EXEC=${HOST_EXEC:-nsenter -t 1 -m -u -i -n -p --}
PAYLOAD_DIR=${PAYLOAD_DIR:-/opt/nanovisor/bin}
SCRIPT_DIR=${SCRIPT_DIR:-$(dirname "$0")}
CONFIG_SOURCE=${CONFIG_SOURCE:-/etc/nanovisor-config}
SERVICE_ACCOUNT_DIR=${SERVICE_ACCOUNT_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
CONFIG_DIR=${CONFIG_DIR:-/etc/nanovisor}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-/var/lib/nanovisor/checkpoints}
RUNTIME_HANDLER=${RUNTIME_HANDLER:-nanovisor}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
CONTAINERD_SOCKET=${CONTAINERD_SOCKET:-/run/containerd/containerd.sock}
CONTAINERD_RESTART=${CONTAINERD_RESTART:-true}
CONTAINERD_RESTART_COMMAND=${CONTAINERD_RESTART_COMMAND:-systemctl restart containerd}
CONTAINERD_READY_TIMEOUT=${CONTAINERD_READY_TIMEOUT:-120}
NODE_LABEL_KEY=${NODE_LABEL_KEY:-nanovisor.dev/runtime}
NODE_LABEL_VALUE=${NODE_LABEL_VALUE:-ready}
LABEL_NODE=${LABEL_NODE:-true}

BINARIES="runsc containerd-shim-nanovisor-v1"
# Written before containerd's config is changed and removed once containerd runs with it,
# so a run that died in between restarts containerd even though the config is unchanged.
PENDING=$HOST_ROOT$CONFIG_DIR/.containerd-restart-pending

log() { echo "nanovisor-installer: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Runs a command in the host's namespaces (word splitting of HOST_EXEC is intended).
on_host() {
    # shellcheck disable=SC2086
    $HOST_EXEC "$@"
}

# Copies SRC over DST (mode MODE) unless they are equal; a rename, so a process starting
# the file meanwhile sees the old or the new one, never half of it.
put_file() {
    src=$1 dst=$2 mode=$3
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        return 0
    fi
    cp "$src" "$dst.nanovisor-tmp"
    chmod "$mode" "$dst.nanovisor-tmp"
    mv -f "$dst.nanovisor-tmp" "$dst"
    log "wrote $dst"
}

install_binaries() {
    for bin in $BINARIES; do
        [ -f "$PAYLOAD_DIR/$bin" ] || die "the installer image lacks $PAYLOAD_DIR/$bin"
        put_file "$PAYLOAD_DIR/$bin" "$HOST_ROOT$BIN_DIR/$bin" 0755
    done
}

install_configs() {
    mkdir -p "$HOST_ROOT$CONFIG_DIR"
    [ -f "$CONFIG_SOURCE/shim.toml" ] || die "$CONFIG_SOURCE/shim.toml is missing (the chart's ConfigMap)"
    put_file "$CONFIG_SOURCE/shim.toml" "$HOST_ROOT$CONFIG_DIR/shim.toml" 0644
    if [ -f "$CONFIG_SOURCE/acl.yaml" ]; then
        put_file "$CONFIG_SOURCE/acl.yaml" "$HOST_ROOT$CONFIG_DIR/acl.yaml" 0644
    elif [ -f "$HOST_ROOT$CONFIG_DIR/acl.yaml" ]; then
        # No default policy any more: shim.toml no longer names it, so it must not linger.
        rm -f "$HOST_ROOT$CONFIG_DIR/acl.yaml"
        log "removed $HOST_ROOT$CONFIG_DIR/acl.yaml (no default ACL policy)"
    fi
}

# Checkpoint images: one line "NAME REF [plain-http]" each in CONFIG_SOURCE/checkpoint-images.
# An image is pulled again only when its REF changes (.NAME.ref records it): pin REF by
# digest (REPO@sha256:…) so that a tag moving in the registry is never missed.
pull_checkpoint_images() {
    dir=$HOST_ROOT$CHECKPOINT_DIR
    list=$CONFIG_SOURCE/checkpoint-images
    mkdir -p "$dir"
    if [ -f "$list" ]; then
        while read -r name ref flags; do
            [ -n "$name" ] || continue
            case "$name" in
                .* | */* | *[!A-Za-z0-9._-]*) die "checkpoint image name \"$name\" is not a plain file name" ;;
            esac
            wanted="$ref $flags"
            if [ -d "$dir/$name" ] && [ -f "$dir/.$name.ref" ] && [ "$(cat "$dir/.$name.ref")" = "$wanted" ]; then
                continue
            fi
            set --
            [ "$flags" != plain-http ] || set -- --plain-http
            rm -rf "$dir/.$name.pulling"
            log "pulling checkpoint image $name from $ref"
            "$PAYLOAD_DIR/runsc" image pull "$@" "$ref" "$dir/.$name.pulling" ||
                die "runsc image pull $ref failed (see above); fix the ref or the registry and the pod retries"
            # Swap by renames: a restore opening NAME meanwhile finds the old or the new image.
            rm -rf "$dir/.$name.old"
            [ ! -e "$dir/$name" ] || mv "$dir/$name" "$dir/.$name.old"
            mv "$dir/.$name.pulling" "$dir/$name"
            rm -rf "$dir/.$name.old"
            echo "$wanted" >"$dir/.$name.ref"
        done <"$list"
    fi
    # Images this installer pulled that the chart no longer lists.
    for marker in "$dir"/.*.ref; do
        [ -f "$marker" ] || continue
        name=${marker##*/.}
        name=${name%.ref}
        if [ ! -f "$list" ] || ! awk -v n="$name" '$1 == n { found = 1 } END { exit !found }' "$list"; then
            rm -rf "${dir:?}/$name" "$marker"
            log "removed checkpoint image $name (no longer listed)"
        fi
    done
}

# The config version to write when containerd's config has no settings yet: 3 for
# containerd 2.x, 2 for 1.6/1.7.
containerd_config_version() {
    out=$(on_host containerd --version) ||
        die "cannot run containerd --version on the host: is containerd installed?"
    v=$(echo "$out" | awk '{ print $3 }')
    v=${v#v}
    case "${v%%.*}" in
        1) echo 2 ;;
        [2-9]) echo 3 ;;
        *) die "cannot read containerd's version from \"$out\"" ;;
    esac
}

configure_containerd() {
    sh "$SCRIPT_DIR/configure-containerd.sh" --root "$HOST_ROOT" --config "$CONTAINERD_CONFIG" \
        --handler "$RUNTIME_HANDLER" --shim-config "$CONFIG_DIR/shim.toml" "$@"
}

# containerd must parse the edited config and see the handler in it before it is
# restarted: a config it refuses would leave the node without a container runtime.
check_containerd_config() {
    want=$1
    dump=$(on_host containerd --config "$CONTAINERD_CONFIG" config dump) ||
        return 1
    case "$dump" in
        *"runtimes.$RUNTIME_HANDLER]"*) has=true ;;
        *) has=false ;;
    esac
    [ "$has" = "$want" ]
}

containerd_answers() {
    if on_host sh -c 'command -v ctr' >/dev/null 2>&1; then
        on_host ctr --address "$CONTAINERD_SOCKET" version >/dev/null 2>&1
    else
        on_host test -S "$CONTAINERD_SOCKET"
    fi
}

restart_containerd() {
    log "restarting containerd: $CONTAINERD_RESTART_COMMAND"
    # shellcheck disable=SC2086
    on_host $CONTAINERD_RESTART_COMMAND || return 1
    waited=0
    until containerd_answers; do
        [ "$waited" -lt "$CONTAINERD_READY_TIMEOUT" ] || return 1
        sleep 2
        waited=$((waited + 2))
    done
    log "containerd answers on $CONTAINERD_SOCKET"
}

# Applies the handler change (configure-containerd.sh arguments in "$@"); on --remove the
# handler must be gone afterwards, else present.
apply_containerd_change() {
    want=true
    for a in "$@"; do [ "$a" != --remove ] || want=false; done
    if [ "$want" = true ]; then
        default_version=$(containerd_config_version)
        set -- "$@" --default-version "$default_version"
    fi
    # An assignment, not a test: set -e then stops on a failed run (a config it refuses).
    would=$(configure_containerd --dry-run "$@")
    if [ "$would" = changed ]; then
        mkdir -p "$(dirname "$PENDING")"
        : >"$PENDING"
        configure_containerd "$@" >/dev/null
        if ! check_containerd_config "$want"; then
            rm -f "$PENDING"
            if [ "$want" = true ]; then
                configure_containerd --remove >/dev/null
                die "containerd does not accept its edited config (or does not show runtime $RUNTIME_HANDLER in it); the change is undone (backups: *.nanovisor-backup beside $CONTAINERD_CONFIG)"
            fi
            die "containerd still shows runtime $RUNTIME_HANDLER after the installer's settings were removed (or refuses its config): is it configured elsewhere, e.g. another imported file?"
        fi
    fi
    [ -f "$PENDING" ] || {
        log "containerd's config already up to date"
        return 0
    }
    if [ "$CONTAINERD_RESTART" != true ]; then
        rm -f "$PENDING"
        log "containerd's config changed; restart containerd yourself (containerd.restart is false)"
        return 0
    fi
    if ! restart_containerd; then
        if [ "$want" = true ]; then
            log "containerd did not come back within ${CONTAINERD_READY_TIMEOUT}s; undoing the change"
            configure_containerd --remove >/dev/null
            restart_containerd || log "containerd still does not answer: look at the node (journalctl -u containerd)"
        fi
        rm -f "$PENDING"
        die "containerd did not answer on $CONTAINERD_SOCKET within ${CONTAINERD_READY_TIMEOUT}s after a restart"
    fi
    rm -f "$PENDING"
}

# Sets (VALUE given) or removes (no VALUE) the node label, with the pod's service account.
label_node() {
    [ "$LABEL_NODE" = true ] || return 0
    [ -n "${NODE_NAME:-}" ] || die "NODE_NAME is not set (the DaemonSet sets it from spec.nodeName)"
    if [ $# -gt 0 ]; then
        body="{\"metadata\":{\"labels\":{\"$NODE_LABEL_KEY\":\"$1\"}}}"
    else
        body="{\"metadata\":{\"labels\":{\"$NODE_LABEL_KEY\":null}}}"
    fi
    host=${KUBERNETES_SERVICE_HOST:?not running in a pod (KUBERNETES_SERVICE_HOST unset)}
    case "$host" in *:*) host="[$host]" ;; esac
    url="https://$host:${KUBERNETES_SERVICE_PORT:-443}/api/v1/nodes/$NODE_NAME"
    # The token goes to curl in a file, not on its command line: with hostPID every
    # process on the node can read our command lines.
    auth=$(mktemp "${TMPDIR:-/tmp}/nanovisor-auth.XXXXXX")
    printf 'Authorization: Bearer %s\n' "$(cat "$SERVICE_ACCOUNT_DIR/token")" >"$auth"
    status=0
    ${CURL:-curl} --silent --show-error --fail --max-time 30 --retry 5 --retry-all-errors \
        --cacert "$SERVICE_ACCOUNT_DIR/ca.crt" \
        --header "@$auth" \
        --header "Content-Type: application/merge-patch+json" \
        --request PATCH --data "$body" --output /dev/null "$url" || status=$?
    rm -f "$auth"
    [ "$status" = 0 ] ||
        die "could not patch node $NODE_NAME's labels (curl exit $status; the ClusterRole grants nodes get/patch)"
    log "node $NODE_NAME: label $NODE_LABEL_KEY ${1:-removed}"
}

install() {
    # The sentry runs guests in KVM: without it every sandbox here would fail to start.
    # Checked before anything changes, and the node stays unlabelled.
    on_host test -c /dev/kvm ||
        die "node ${NODE_NAME:-?} has no /dev/kvm: nanovisor sandboxes need KVM (bare metal, or a VM with nested virtualization); restrict daemonset.nodeSelector to nodes that have it"
    install_binaries
    install_configs
    pull_checkpoint_images
    apply_containerd_change
    label_node "$NODE_LABEL_VALUE"
    log "installed on node ${NODE_NAME:-?}"
}

uninstall() {
    # Unlabel first, so no new nanovisor pod lands here while the runtime goes away.
    label_node
    apply_containerd_change --remove
    rm -f "$HOST_ROOT$CONFIG_DIR/shim.toml" "$HOST_ROOT$CONFIG_DIR/acl.yaml"
    dir=$HOST_ROOT$CHECKPOINT_DIR
    for marker in "$dir"/.*.ref; do
        [ -f "$marker" ] || continue
        name=${marker##*/.}
        name=${name%.ref}
        rm -rf "${dir:?}/$name" "$marker"
    done
    for bin in $BINARIES; do
        rm -f "$HOST_ROOT$BIN_DIR/$bin"
    done
    log "uninstalled from node ${NODE_NAME:-?}"
}

pause() {
    trap 'exit 0' TERM INT
    while :; do
        sleep 3600 &
        wait $! || true
    done
}

case "${1:-}" in
    install) install ;;
    uninstall) uninstall ;;
    pause) pause ;;
    *)
        echo "usage: install.sh install|uninstall|pause" >&2
        exit 2
        ;;
esac
