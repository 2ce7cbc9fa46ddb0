# ctest driver for examples/consumer: installs moe into a private prefix, configures and builds the
# outside project with find_package(moe), and runs it. Inputs: MOE_BUILD, CONSUMER_SRC, WORK, TORCH_DIR.
file(REMOVE_RECURSE "${WORK}")
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${ARGV}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install "${MOE_BUILD}" --prefix "${WORK}/prefix")
run(${CMAKE_COMMAND} -S "${CONSUMER_SRC}" -B "${WORK}/build" -G Ninja -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_PREFIX_PATH=${WORK}/prefix" "-DTorch_DIR=${TORCH_DIR}" ${LAUNCHER_ARG})
run(${CMAKE_COMMAND} --build "${WORK}/build")
run("${WORK}/build/moe_consumer")
