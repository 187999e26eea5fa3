# Evaluates nix/module.nix, nix/package.nix and flake.nix without a nixpkgs checkout
# (CI has only Debian's nix-bin): a stub lib with the functions they use (copied from
# nixpkgs' lib where the result matters, such as escapeShellArg), stub pkgs, and a small
# stand-in for the module system that fills every option with its value or its default.
# What it cannot check: nixpkgs' type checking and merging, pkgs.formats.toml's rendering
# (the stub only records which settings reach it), and the package's build.
#
#   nix-instantiate --eval --strict --json tests/package/nix_eval.nix --argstr version 0.1.0 \
#     --argstr unitKeys "Type ExecStart ..."     # the [Service] keys of portalbd@.service
# prints the list of failed checks: [] when all pass.
{ version, unitKeys ? "" }:
let
  lib = rec {
    types = {
      bool = { name = "bool"; };
      str = { name = "str"; };
      port = { name = "port"; };
      package = { name = "package"; };
      ints.positive = { name = "positiveInt"; };
      nullOr = elem: { name = "nullOr"; inherit elem; };
      listOf = elem: { name = "listOf"; inherit elem; };
      attrsOf = elem: { name = "attrsOf"; inherit elem; };
      submodule = module: { name = "submodule"; inherit module; };
    };
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = what: mkOption { type = types.bool; default = false; description = "Whether to enable ${what}."; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (builtins.attrNames set);
    filterAttrs = pred: set: removeAttrs set (builtins.filter (n: !(pred n set.${n})) (builtins.attrNames set));
    optional = cond: x: if cond then [ x ] else [ ];
    unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
    escapeShellArg = arg:
      let string = toString arg; in
      if builtins.match "[[:alnum:],._+:@%/-]+" string == null
      then "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] string}'"
      else string;
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
    genAttrs = names: f: builtins.listToAttrs (map (n: nameValuePair n (f n)) names);
    cleanSourceFilter = path: type: true;
    cleanSourceWith = { src, filter }: { inherit src filter; };
  };

  fakeDrv = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  pkgs = {
    portalbd = fakeDrv "portalbd-${version}";
    nbd = fakeDrv "nbd-3.24";
    # The file's name holds a hash of the settings, so a check can tell which reached it.
    formats.toml = { }: {
      type = { name = "toml"; };
      generate = name: value:
        "/nix/store/${builtins.hashString "sha256" (builtins.toJSON value)}-${name}";
    };
  };

  # The module system, as far as this module needs it: an option's value is the one set,
  # else its default; attrsOf (submodule) evaluates each value against the submodule's
  # options, with `config` the filled result (a fixed point, as in nixpkgs).
  isOption = o: (o._type or null) == "option";
  fill = opts: values: builtins.mapAttrs (n: o:
    if isOption o then fillOption o (if values ? ${n} then values.${n} else o.default)
    else fill o (values.${n} or { })) opts;
  fillOption = o: value:
    if o.type.name == "attrsOf" && o.type.elem.name == "submodule"
    then builtins.mapAttrs (name: v: evalSubmodule o.type.elem.module name v) value
    else value;
  evalSubmodule = module: name: values:
    let filled = fill (module { inherit name lib pkgs; config = filled; }).options values;
    in filled;
  evalModule = module: settings:
    let
      m = module { inherit lib pkgs; config = full; };
      full = fill m.options settings;
    in
    {
      options = full;  # every option's value
      config =
        if m.config._type == "if"
        then (if m.config.condition then m.config.content else { })
        else m.config;
    };

  module = import ../../nix/module.nix;
  toml = name: settings: (pkgs.formats.toml { }).generate "portalbd-${name}.toml" settings;

  vol1Settings = {
    storage = { url = "s3://bucket/vol1"; stop_timeout_ms = 120000; };
    nbd.address = "127.0.0.1:10810";
  };
  evaluated = evalModule module {
    services.portalbd.instances = {
      vol1 = {
        enable = true;
        settings = vol1Settings;
        environmentFile = "/run/secrets/vol1.env";
        attach = { enable = true; device = "/dev/nbd1"; port = 10810; };
      };
      vol2.enable = true;
      off.settings.storage.url = "file:///var/lib/portalbd/off";  # enable defaults to false
    };
  };
  cfg = evaluated.config;
  vol2 = evaluated.options.services.portalbd.instances.vol2;
  none = (evalModule module { services.portalbd.instances.off.enable = false; }).config;
  s = cfg.systemd.services;
  bin = "${pkgs.portalbd}/bin/portalbd";
  nbdClient = "${pkgs.nbd}/bin/nbd-client";

  # The flake's outputs with a stub nixpkgs input.
  flake = (import ../../flake.nix).outputs { self = flake; inherit nixpkgs; };
  nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: {
        callPackage = f: args:
          let fn = import f; in
          fn (builtins.mapAttrs (n: _: { inherit lib; stdenv.mkDerivation = a: a; }.${n} or n)
            (builtins.functionArgs fn) // args);
      });
  };
  drv = flake.packages.x86_64-linux.portalbd;

  checks = [
    [ "instance options" (builtins.attrNames vol2)
      [ "attach" "enable" "environmentFile" "package" "settings" "stopTimeoutSec" ] ]
    [ "attach options" (builtins.attrNames vol2.attach)
      [ "device" "enable" "export" "extraArgs" "host" "port" ] ]
    [ "package default: pkgs.portalbd" vol2.package pkgs.portalbd ]
    [ "nothing without an enabled instance" none { } ]
    [ "nbd kernel module" cfg.boot.kernelModules [ "nbd" ] ]
    [ "portalctl on the PATH" cfg.environment.systemPackages [ pkgs.portalbd ] ]
    [ "services" (builtins.attrNames s) [ "portalbd-attach-vol1" "portalbd-vol1" "portalbd-vol2" ] ]
    [ "vol1 ExecStart" s.portalbd-vol1.serviceConfig.ExecStart
      "${bin} --config ${toml "vol1" vol1Settings} --socket /run/portalbd/vol1.sock" ]
    [ "vol2 ExecStart (settings default {})" s.portalbd-vol2.serviceConfig.ExecStart
      "${bin} --config ${toml "vol2" { }} --socket /run/portalbd/vol2.sock" ]
    [ "vol1 EnvironmentFile" s.portalbd-vol1.serviceConfig.EnvironmentFile [ "/run/secrets/vol1.env" ] ]
    [ "vol2 EnvironmentFile" s.portalbd-vol2.serviceConfig.EnvironmentFile [ ] ]
    [ "vol1 TimeoutStopSec (stop_timeout_ms 120 s + 30 s)" s.portalbd-vol1.serviceConfig.TimeoutStopSec "150s" ]
    [ "vol2 TimeoutStopSec (default 60 s + 30 s)" s.portalbd-vol2.serviceConfig.TimeoutStopSec "90s" ]
    [ "Restart" s.portalbd-vol1.serviceConfig.Restart "on-failure" ]
    [ "Type" s.portalbd-vol1.serviceConfig.Type "notify" ]
    [ "ProtectSystem" s.portalbd-vol1.serviceConfig.ProtectSystem "strict" ]
    [ "StateDirectory" s.portalbd-vol1.serviceConfig.StateDirectory "portalbd" ]
    [ "attach ExecStart" s.portalbd-attach-vol1.serviceConfig.ExecStart
      "${nbdClient} -N portalbd 127.0.0.1 10810 /dev/nbd1" ]
    [ "attach ExecStop" s.portalbd-attach-vol1.serviceConfig.ExecStop "${nbdClient} -d /dev/nbd1" ]
    [ "attach after its server" s.portalbd-attach-vol1.after [ "portalbd-vol1.service" ] ]
    [ "attach requires its server" s.portalbd-attach-vol1.requires [ "portalbd-vol1.service" ] ]
    [ "[Service] keys of portalbd@.service missing in the module"
      (builtins.filter (k: k != "" && !(s.portalbd-vol1.serviceConfig ? ${k}))
        (builtins.filter builtins.isString (builtins.split " " unitKeys)))
      [ ] ]
    [ "flake module" (builtins.isFunction flake.nixosModules.default) true ]
    [ "flake package version = CMake project version" drv.version version ]
    [ "flake package name" drv.pname "portalbd" ]
    [ "flake default package" flake.packages.aarch64-linux.default.pname "portalbd" ]
    [ "overlay" ((flake.overlays.default nixpkgs.legacyPackages.x86_64-linux { }).portalbd.pname or null) "portalbd" ]
  ];
in
map (c: "${builtins.elemAt c 0}: got ${builtins.toJSON (builtins.elemAt c 1)}, expected ${builtins.toJSON (builtins.elemAt c 2)}")
  (builtins.filter (c: builtins.elemAt c 1 != builtins.elemAt c 2) checks)
