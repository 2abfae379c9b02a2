# The multi-host test bed (label cluster): tests/cluster/test_X.sh -> cluster_X. Each script makes its own
# hosts with scripts/cluster/netns.sh (network + UTS namespaces joined by a bridge) and runs mpirun across
# them; it exits 77 (skipped) where namespaces cannot be made (not root, no netns/veth support).
# Args: minicolossus binary, scratch dir, mc_cluster_probe binary. RUN_SERIAL: they time things and
# oversubscribe the cores on purpose.
if(MC_HAVE_MPI)
  add_executable(mc_cluster_probe ${CMAKE_CURRENT_LIST_DIR}/cluster_probe.cpp)
  target_link_libraries(mc_cluster_probe PRIVATE mc_core)
  file(GLOB MC_CLUSTER_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.sh)
  foreach(script ${MC_CLUSTER_TESTS})
    get_filename_component(name ${script} NAME_WE)
    string(REGEX REPLACE "^test_" "" name ${name})
    add_test(NAME cluster_${name}
             COMMAND bash ${script} $<TARGET_FILE:minicolossus> ${CMAKE_CURRENT_BINARY_DIR}/cluster_${name}
                     $<TARGET_FILE:mc_cluster_probe>)
    set_tests_properties(cluster_${name} PROPERTIES LABELS cluster TIMEOUT 300 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE
                         ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  endforeach()
endif()
