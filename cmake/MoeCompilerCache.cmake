# Use ccache when it is installed. The sloppiness settings let ccache cache translation units that
# use the precompiled LibTorch header.
find_program(MOE_CCACHE ccache)
if(MOE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(_moe_launcher ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}" ${MOE_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_moe_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_moe_launcher})
  message(STATUS "moe: using ccache (${MOE_CCACHE})")
endif()
