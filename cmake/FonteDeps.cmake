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
#
# Table reads (docs/architecture.md, "LevelDB reads tables with pread"):
# LevelDB 1.23 mmap()s up to 1000 table files, and every page a read or a
# compaction touches stays in the listener's RSS until the table closes -
# 40-50 MiB at the peak of a 2M-event ingest. Its one switch to pread()
# instead is EnvPosixTestHelper::SetReadOnlyMMapLimit(0), which Debian's
# static libleveldb.a has and the shared library does not export. With
# FONTE_TABLE_READS=pread (the default) we link the static library when
# that symbol links, and define FONTE_TABLE_PREAD for listener/store.c;
# otherwise (or with FONTE_TABLE_READS=mmap) the shared library, as before.
set(FONTE_TABLE_READS "pread" CACHE STRING
    "How LevelDB reads table files: pread (RSS bounded) or mmap")
set_property(CACHE FONTE_TABLE_READS PROPERTY STRINGS pread mmap)
find_path(LEVELDB_INCLUDE_DIR leveldb/c.h REQUIRED)
find_library(LEVELDB_LIBRARY leveldb REQUIRED)
find_library(LEVELDB_STATIC_LIBRARY libleveldb.a)
find_library(SNAPPY_STATIC_LIBRARY libsnappy.a)
if(FONTE_TABLE_READS STREQUAL "pread" AND LEVELDB_STATIC_LIBRARY AND
   SNAPPY_STATIC_LIBRARY)
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_LIBRARIES ${LEVELDB_STATIC_LIBRARY}
      ${SNAPPY_STATIC_LIBRARY} stdc++ pthread)
  check_c_source_compiles("
    void f(int) __asm__(\"_ZN7leveldb18EnvPosixTestHelper20SetReadOnlyMMapLimitEi\");
    int main(void) { f(0); return 0; }" FONTE_HAVE_LEVELDB_MMAP_LIMIT)
  unset(CMAKE_REQUIRED_LIBRARIES)
endif()
if(FONTE_TABLE_READS STREQUAL "pread" AND FONTE_HAVE_LEVELDB_MMAP_LIMIT)
  add_library(fonte::leveldb STATIC IMPORTED)
  set_target_properties(fonte::leveldb PROPERTIES
    IMPORTED_LOCATION ${LEVELDB_STATIC_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${LEVELDB_INCLUDE_DIR}
    INTERFACE_COMPILE_DEFINITIONS FONTE_TABLE_PREAD=1
    INTERFACE_LINK_LIBRARIES "${SNAPPY_STATIC_LIBRARY};stdc++;Threads::Threads")
  message(STATUS "LevelDB: static ${LEVELDB_STATIC_LIBRARY}, tables read with pread")
else()
  add_library(fonte::leveldb UNKNOWN IMPORTED)
  set_target_properties(fonte::leveldb PROPERTIES
    IMPORTED_LOCATION ${LEVELDB_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${LEVELDB_INCLUDE_DIR})
  message(STATUS "LevelDB: ${LEVELDB_LIBRARY}, tables mmapped "
                 "(FONTE_TABLE_READS=${FONTE_TABLE_READS})")
endif()

find_program(PROTOC_C protoc-c REQUIRED)
