"""CSI Identity against the real portalbd-csi and portalbd: name, version, capabilities
by role, and Probe following the daemon."""

from csi_harness import DRIVER_NAME, Csi, Daemon, check, check_eq, csi, run_cases

CAP = csi.PluginCapability


def capabilities(c):
    reply = c.identity.GetPluginCapabilities(csi.GetPluginCapabilitiesRequest())
    services = {cap.service.type for cap in reply.capabilities if cap.HasField("service")}
    expansion = {cap.volume_expansion.type for cap in reply.capabilities
                 if cap.HasField("volume_expansion")}
    return services, expansion


def case_plugin_info(tmp):
    with Daemon(tmp) as d, Csi(tmp, d) as c:
        info = c.identity.GetPluginInfo(csi.GetPluginInfoRequest())
        check_eq(info.name, DRIVER_NAME, "driver name")
        check(info.vendor_version != "", "a vendor version")


def case_capabilities_by_role(tmp):
    with Daemon(tmp) as d:
        with Csi(tmp, d, role="controller") as c:
            services, expansion = capabilities(c)
            check_eq(services, {CAP.Service.CONTROLLER_SERVICE}, "controller role")
            check_eq(expansion, {CAP.VolumeExpansion.ONLINE}, "online expansion")
        with Csi(tmp, d, role="node") as c:
            services, _ = capabilities(c)
            check_eq(services, set(), "a node plugin has no controller service")


def case_probe_follows_daemon(tmp):
    with Daemon(tmp) as d:
        c = Csi(tmp, d)
        check(c.identity.Probe(csi.ProbeRequest()).ready.value, "ready with its daemon up")
        d.stop()
        check(not c.identity.Probe(csi.ProbeRequest()).ready.value,
              "not ready once its daemon is gone")
        c.stop()


run_cases(globals())
