# ctest driver for examples/consumer: installs moe into a private prefix, configures and builds the
# outside project with find_package(moe), and runs it; then trains with its router plugin through the
# stock moe-train and translates with moe-translate (which loads the plugin the checkpoint names, and
# says which is missing when it cannot). Inputs: MOE_BUILD, CONSUMER_SRC, WORK, TORCH_DIR; for the
# plugin run MOE_BIN, TINY_CONFIG, CACHE (skipped when MOE_BIN is empty).
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

if(NOT MOE_BIN)
  return()
endif()
set(plugin "${WORK}/build/libmoe_cosine_router.so")
run("${MOE_BIN}/moe-train" --plugin "${plugin}" --config "${TINY_CONFIG}" --moe.variant cosine
    --moe.router.cosine_dim 8 --moe.router.cosine_temperature 0.1 --train.max_steps 4 --train.threads 1
    --run_dir "${WORK}/run" --data.cache_dir "${CACHE}" --log_level warn --no-eval)
file(WRITE "${WORK}/in.txt" "Open the file\nQuit\n")
run("${MOE_BIN}/moe-translate" --checkpoint "${WORK}/run/checkpoint-4.moeckpt" --target de -i "${WORK}/in.txt"
    -o "${WORK}/out.txt")
file(STRINGS "${WORK}/out.txt" lines)
list(LENGTH lines n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "moe-translate with the plugin router wrote ${n} lines, expected 2")
endif()
# The plugin moved: moe-translate names what is missing; --plugin with the new path works.
file(RENAME "${plugin}" "${WORK}/moved_cosine_router.so")
execute_process(COMMAND "${MOE_BIN}/moe-translate" --checkpoint "${WORK}/run/checkpoint-4.moeckpt" --target de
                -i "${WORK}/in.txt" RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
string(FIND "${err}" "needs moe.variant = 'cosine' from moe.plugins" at)
if(rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "a missing plugin must be named; got (${rc}): ${err}")
endif()
run("${MOE_BIN}/moe-translate" --checkpoint "${WORK}/run/checkpoint-4.moeckpt" --target de -i "${WORK}/in.txt"
    --plugin "${WORK}/moved_cosine_router.so" -o "${WORK}/out2.txt")
message(STATUS "plugin router: trained with moe-train, translated with moe-translate")
