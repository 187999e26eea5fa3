# portalbd for Nix: the package, and the NixOS module services.portalbd.instances.<name>
# (nix/module.nix).
#
#   nix build .#portalbd
#   imports = [ portalbd.nixosModules.default ];   # in a NixOS configuration
{
  description = "portalbd: an NBD block device server backed by object storage";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        portalbd = pkgs.callPackage ./nix/package.nix { };
        default = portalbd;
      });

      overlays.default = final: prev: {
        portalbd = final.callPackage ./nix/package.nix { };
      };

      # The module runs pkgs.portalbd when an overlay provides it, else builds this tree.
      nixosModules.default = import ./nix/module.nix;
      nixosModules.portalbd = self.nixosModules.default;
    };
}
