/// The confinement every container process gets (init and exec'd commands alike), in the
/// spirit of LXD's defaults. Names are resolved by libseccomp and libcap in the helper.
public enum SecurityPolicy {
    /// Syscalls answered with EPERM: loading kernel code or a new kernel, and escaping the
    /// mount namespace through file handles.
    public static let deniedSyscalls = [
        "kexec_load", "kexec_file_load", "open_by_handle_at",
        "init_module", "finit_module", "delete_module",
    ]

    /// Capabilities removed from the bounding set (libcap names).
    public static let droppedCapabilities = [
        "cap_sys_module", "cap_sys_rawio", "cap_sys_time", "cap_mac_admin", "cap_mac_override",
    ]
}
