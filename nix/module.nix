# NixOS module: services.portalbd.instances.<name>, one portalbd per instance, as the
# original portalbd's module offers, plus the nbd kernel module and, per instance, an
# optional nbd-client attachment at boot.
#
#   services.portalbd.instances.vol1 = {
#     enable = true;
#     settings = {
#       device.disk_size_gb = 100;
#       storage.url = "s3://my-bucket/volumes/vol1";
#       nbd.address = "127.0.0.1:10809";
#     };
#     environmentFile = "/run/secrets/portalbd-vol1.env";  # AWS_ACCESS_KEY_ID=... (not in the store)
#     attach = { enable = true; device = "/dev/nbd0"; };
#   };
#
# The service is the Debian unit's (systemd/portalbd@.service.in): the same sandbox, the
# control socket at /run/portalbd/<name>.sock, SIGTERM flushes.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf types;

  cfg = config.services.portalbd;
  settingsFormat = pkgs.formats.toml { };

  instanceOptions = { name, config, ... }: {
    options = {
      enable = mkEnableOption "the portalbd instance ${name}";

      package = mkOption {
        type = types.package;
        default = pkgs.portalbd or (pkgs.callPackage ./package.nix { });
        defaultText = lib.literalExpression "pkgs.portalbd or (pkgs.callPackage ./package.nix { })";
        description = "The portalbd package to run.";
      };

      settings = mkOption {
        type = settingsFormat.type;
        default = { };
        example = {
          device.disk_size_gb = 100;
          storage.url = "s3://my-bucket/volumes/vol1";
          nbd.address = "127.0.0.1:10809";
        };
        description = ''
          portalbd's configuration (README "Configuration"), rendered to TOML. The
          control socket is /run/portalbd/<name>.sock whatever `socket` says.
        '';
      };

      environmentFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/portalbd-vol1.env";
        description = ''
          A file of VAR=value lines (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) for the
          service's environment. A string, so the secret never enters the Nix store.
        '';
      };

      stopTimeoutSec = mkOption {
        type = types.ints.positive;
        default = settingsStopMs config.settings / 1000 + 30;
        defaultText = lib.literalExpression "storage.stop_timeout_ms / 1000 + 30";
        description = "TimeoutStopSec: longer than portalbd's own stop_timeout_ms.";
      };

      attach = {
        enable = mkEnableOption "attaching the export to an NBD device at boot";
        device = mkOption {
          type = types.str;
          default = "/dev/nbd0";
          description = "The NBD device to attach.";
        };
        host = mkOption {
          type = types.str;
          default = "127.0.0.1";
          description = "Where portalbd listens (settings.nbd.address).";
        };
        port = mkOption {
          type = types.port;
          default = 10809;
          description = "Its port.";
        };
        export = mkOption {
          type = types.str;
          default = "portalbd";
          description = "The export: portalbd, or portalbd@SNAPSHOT (read-only).";
        };
        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "-timeout" "600" ];
          description = "More nbd-client arguments.";
        };
      };
    };
  };

  # storage.stop_timeout_ms, portalbd's default 60 s when unset.
  settingsStopMs = s: (s.storage or { }).stop_timeout_ms or 60000;

  enabled = lib.filterAttrs (_: i: i.enable) cfg.instances;
  attached = lib.filterAttrs (_: i: i.attach.enable) enabled;

  serverService = name: i: lib.nameValuePair "portalbd-${name}" {
    description = "portalbd NBD server backed by object storage (${name})";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    serviceConfig = {
      Type = "notify";
      ExecStart = lib.escapeShellArgs [
        "${i.package}/bin/portalbd"
        "--config" "${settingsFormat.generate "portalbd-${name}.toml" i.settings}"
        "--socket" "/run/portalbd/${name}.sock"
      ];
      EnvironmentFile = lib.optional (i.environmentFile != null) i.environmentFile;
      TimeoutStartSec = "10min";
      TimeoutStopSec = "${toString i.stopTimeoutSec}s";
      KillMode = "mixed";
      Restart = "on-failure";
      RestartSec = "5s";
      StateDirectory = "portalbd";
      RuntimeDirectory = "portalbd";
      RuntimeDirectoryPreserve = true;
      LogsDirectory = "portalbd";
      UMask = "0077";
      NoNewPrivileges = true;
      CapabilityBoundingSet = "";
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      ProtectProc = "invisible";
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      LockPersonality = true;
      MemoryDenyWriteExecute = true;
      SystemCallArchitectures = "native";
      SystemCallFilter = [ "@system-service" ];
      SystemCallErrorNumber = "EPERM";
      LimitNOFILE = 65536;
    };
  };

  # A oneshot that attaches the device once portalbd serves (it is Type=notify) and
  # detaches it when stopped, before portalbd stops.
  attachService = name: i: lib.nameValuePair "portalbd-attach-${name}" {
    description = "Attach portalbd ${name} to ${i.attach.device}";
    wantedBy = [ "multi-user.target" ];
    requires = [ "portalbd-${name}.service" ];
    after = [ "portalbd-${name}.service" ];
    before = [ "remote-fs-pre.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = lib.escapeShellArgs ([
        "${pkgs.nbd}/bin/nbd-client" "-N" i.attach.export i.attach.host (toString i.attach.port)
        i.attach.device
      ] ++ i.attach.extraArgs);
      ExecStop = lib.escapeShellArgs [ "${pkgs.nbd}/bin/nbd-client" "-d" i.attach.device ];
    };
  };
in
{
  options.services.portalbd.instances = mkOption {
    type = types.attrsOf (types.submodule instanceOptions);
    default = { };
    description = "portalbd instances, each one NBD server on its own store.";
  };

  config = mkIf (enabled != { }) {
    boot.kernelModules = [ "nbd" ];
    environment.systemPackages = lib.unique (lib.mapAttrsToList (_: i: i.package) enabled);
    systemd.services =
      lib.mapAttrs' serverService enabled // lib.mapAttrs' attachService attached;
  };
}
