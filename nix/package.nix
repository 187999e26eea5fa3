# portalbd built from this source tree with nixpkgs' CMake and the same libraries as the
# Debian build (README "Installing"). The tests need network servers and NBD tools, so
# the build does not run them: CI runs them (scripts/test.sh).
{ lib, stdenv, cmake, pkg-config, help2man, asio, curl, openssl, sqlite, nlohmann_json
, cli11, tomlplusplus, pugixml, spdlog, catch2, rapidcheck, lz4, xxHash, prometheus-cpp
, libnl
}:

stdenv.mkDerivation {
  pname = "portalbd";
  version = "0.1.0";  # project(portalbd VERSION ...) in CMakeLists.txt

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      !(builtins.elem (baseNameOf path) [ "build" ".deps" "result" ])
      && lib.cleanSourceFilter path type;
  };

  nativeBuildInputs = [ cmake pkg-config help2man ];
  buildInputs = [
    asio curl openssl sqlite nlohmann_json cli11 tomlplusplus pugixml spdlog catch2
    rapidcheck lz4 xxHash prometheus-cpp libnl  # fmt: spdlog propagates the one it was built with
  ];
  # Another compiler than Debian 12's GCC 12 may warn anew: warnings stay warnings here.
  cmakeFlags = [ "-DCMAKE_BUILD_TYPE=Release" "-DPORTAL_WERROR=OFF" ];
  doCheck = false;

  meta = {
    description = "NBD block device server backed by object storage";
    platforms = lib.platforms.linux;
    mainProgram = "portalbd";
  };
}
