# Find fonte's dependencies, all from Debian's packages
# (scripts/install-deps.sh installs them). Each becomes an imported target
# so the folders' CMakeLists.txt only name what they link.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(CZMQ REQUIRED IMPORTED_TARGET libczmq)
pkg_check_modules(PROTOBUF_C REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(CRITERION IMPORTED_TARGET criterion)

# LevelDB ships no pkg-config file.
find_path(LEVELDB_INCLUDE_DIR leveldb/c.h REQUIRED)
find_library(LEVELDB_LIBRARY leveldb REQUIRED)
add_library(fonte::leveldb UNKNOWN IMPORTED)
set_target_properties(fonte::leveldb PROPERTIES
  IMPORTED_LOCATION ${LEVELDB_LIBRARY}
  INTERFACE_INCLUDE_DIRECTORIES ${LEVELDB_INCLUDE_DIR})

find_program(PROTOC_C protoc-c REQUIRED)
