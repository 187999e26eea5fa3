# Install layout and the Debian package (issue 19), included from the top-level
# CMakeLists.txt after the binaries are defined:
#
#   cmake --install build --prefix /usr         binaries, systemd unit, man pages, example
#   cd build && cpack -G DEB                     portalbd_<version>_amd64.deb
#
# Paths are GNUInstallDirs' (bin/, share/man/, share/doc/portalbd/), relative to the
# prefix; the systemd unit goes to lib/systemd/system under the prefix, which systemd
# searches for /usr and /usr/local alike.
include(GNUInstallDirs)

# The programs a user runs. objstore-bench is a developer's benchmark: not installed.
set(PORTAL_INSTALL_PROGRAMS portalbd portalctl portalbd-csi trace-record trace-bench)
install(TARGETS ${PORTAL_INSTALL_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(PORTAL_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING
    "Where the systemd unit is installed (relative to the prefix, or absolute)")
# ExecStart names the installed binary, so the unit is written at install time, for the
# prefix installed to (cmake --install --prefix, or /usr under cpack).
install(CODE "
  set(CMAKE_INSTALL_FULL_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  if(IS_ABSOLUTE \"${PORTAL_SYSTEMD_UNIT_DIR}\")
    set(unit_dir \"\$ENV{DESTDIR}${PORTAL_SYSTEMD_UNIT_DIR}\")
  else()
    set(unit_dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${PORTAL_SYSTEMD_UNIT_DIR}\")
  endif()
  message(STATUS \"Installing: \${unit_dir}/portalbd@.service\")
  configure_file(${CMAKE_SOURCE_DIR}/systemd/portalbd@.service.in
                 \"\${unit_dir}/portalbd@.service\" @ONLY)
")
install(FILES ${CMAKE_SOURCE_DIR}/packaging/example.toml ${CMAKE_SOURCE_DIR}/packaging/example.env
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Man pages: help2man (Debian's help2man) from each program's --help and --version, plus
# the hand-written sections in man/NAME.h2m, so that the options never drift from the
# code. Built with the programs; without help2man they are left out (with a warning).
find_program(HELP2MAN help2man)
set(PORTAL_MAN_PAGES "portalbd 8 an NBD block device server backed by object storage"
                     "portalctl 1 control a running portalbd (snapshots, status)"
                     "portalbd-csi 8 the CSI driver of portalbd for Kubernetes"
                     "trace-record 1 record an NBD workload through a transparent proxy"
                     "trace-bench 1 replay NBD traces and measure")
if(HELP2MAN)
  set(man_outputs "")
  foreach(entry ${PORTAL_MAN_PAGES})
    string(REPLACE " " ";" words "${entry}")
    list(POP_FRONT words prog section)
    string(REPLACE ";" " " summary "${words}")
    set(page ${CMAKE_BINARY_DIR}/man/${prog}.${section})
    # PATH: help2man runs "PROG --help", so the usage lines say "PROG", not a build path.
    add_custom_command(
      OUTPUT ${page}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${CMAKE_COMMAND} -E env PATH=$<TARGET_FILE_DIR:${prog}>:$ENV{PATH}
              ${HELP2MAN} --no-info --no-discard-stderr --section=${section}
              --name=${summary} --include=${CMAKE_SOURCE_DIR}/man/${prog}.h2m
              --output=${page} ${prog}
      COMMAND gzip -9nf ${page}
      DEPENDS ${prog} ${CMAKE_SOURCE_DIR}/man/${prog}.h2m
      COMMENT "help2man ${prog}.${section}"
      VERBATIM)
    list(APPEND man_outputs ${page}.gz)
    install(FILES ${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(man ALL DEPENDS ${man_outputs})
else()
  message(WARNING "help2man not found: man pages are not built or installed "
                  "(apt-get install help2man)")
endif()

# ---------------------------------------------------------------------------------------
# cpack -G DEB: one package, portalbd_<version>_amd64.deb, installing under /usr. Its
# Depends come from dpkg-shlibdeps on the binaries (libcurl4, libssl3, libspdlog, ...).
set(CPACK_PACKAGE_NAME portalbd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "portalbd")
set(CPACK_PACKAGE_CONTACT "portalbd maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "NBD block device server backed by object storage")
set(CPACK_PACKAGE_DESCRIPTION
    "portalbd serves a block device over NBD whose blocks live in object storage (S3, a\n"
    "local directory, or memory), with atomic snapshots and point-in-time restore.\n"
    "Includes portalctl, portalbd-csi (the CSI driver for Kubernetes), trace-record,\n"
    "trace-bench and the portalbd@.service unit.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "nbd-client")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
                                       ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
