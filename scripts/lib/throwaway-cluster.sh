# Sourced, not run: a throwaway three-member cluster of scripts/run-local's (its busybox image
# and containers) in a directory of its own under /tmp, for scripts that measure or check
# against one (scripts/compat/lxc-cli, scripts/bench/list).
#
#   throwaway_cluster_make PREFIX FIRST_OCTET   sets cluster_dir, cluster_port; members
#       PREFIX1..3 on 127.0.0.(FIRST_OCTET+1..3):cluster_port
#   throwaway_cluster_start BIN_DIR             scripts/run-local; 1 with its log's tail on stderr
#   throwaway_cluster_remove BIN_DIR            deletes every instance (containers outlive their
#       agents), stops the agents, unmounts and removes the directory
# Call from the repository's root.

throwaway_cluster_make() {
    cluster_prefix=$1
    local first=$2 i
    cluster_dir=$(mktemp -d "/tmp/lxd-$cluster_prefix.XXXXXX")
    # Container roots (mapped uids) must traverse it.
    chmod 755 "$cluster_dir"
    cluster_port=$((20000 + $$ % 20000))
    {
        echo "members:"
        for i in 1 2 3; do
            echo "  - { server_name: $cluster_prefix$i, https_address: \"127.0.0.$((first + i)):$cluster_port\", data_dir: $cluster_prefix$i }"
        done
    } >"$cluster_dir/layout.yaml"
}

throwaway_cluster_start() {
    LXD_SWIFT_ROOT=$cluster_dir/root LXD_SWIFT_BIN_DIR=$1 scripts/run-local --layout "$cluster_dir/layout.yaml" \
        >"$cluster_dir/run-local.log" 2>&1 && return 0
    tail -5 "$cluster_dir/run-local.log" >&2
    return 1
}

throwaway_cluster_remove() {
    local lxdctl=$1/lxdctl first=$cluster_dir/root/${cluster_prefix}1 m pid name
    if [ -S "$first/unix.socket" ]; then
        for name in $(LXD_DIR=$first "$lxdctl" list -f csv 2>/dev/null | cut -d, -f1); do
            LXD_DIR=$first "$lxdctl" delete --force "$name" >/dev/null 2>&1 ||
                echo "warning: could not delete container $name; remove it by hand" >&2
        done
    fi
    for m in 1 2 3; do
        pid=$(cat "$cluster_dir/root/$cluster_prefix$m/lxdd.pid" 2>/dev/null) && kill "$pid" 2>/dev/null || true
    done
    for m in 1 2 3; do
        pid=$(cat "$cluster_dir/root/$cluster_prefix$m/lxdd.pid" 2>/dev/null) || continue
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    awk -v d="$cluster_dir/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$cluster_dir" 2>/dev/null || true
}
