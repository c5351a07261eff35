# data.dataset*: llm.c shards, data sets of many shards, the sampling order, pt_prepare
# (src/data/shards.c, dataset.c, prepare.c), and exact resume on a prepared data set.
add_executable(test_dataset ${CMAKE_CURRENT_LIST_DIR}/test_dataset.c)
target_link_libraries(test_dataset PRIVATE pt_data)
add_test(NAME data.dataset COMMAND test_dataset WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(data.dataset PROPERTIES LABELS "sanitize" TIMEOUT 120)
if(TARGET pipetrain)
  # prepare through the CLI: a bad option is a usage error (2), bad input names the file and line
  add_test(NAME data.prepare_cli
           COMMAND sh -c "printf '{\"text\": 1}\\n' > cli_bad.jsonl && ! $<TARGET_FILE:pipetrain> prepare --tokenizer gpt2 --input cli_bad.jsonl --output cli_bad 2> err.txt && grep -q 'cli_bad.jsonl:1:' err.txt && $<TARGET_FILE:pipetrain> prepare --input x --output y --format xml 2> err.txt; test $? -eq 2 && grep -q -- '--format' err.txt && printf 'one document\\n' > cli_a.txt && printf 'two\\n' > cli_b.txt && $<TARGET_FILE:pipetrain> prepare --tokenizer gpt2 --input cli_a.txt cli_b.txt --output cli_ab.bin > out.txt && grep -q '2 documents' out.txt && grep -q '\"name\":.*\"gpt2\"' cli_ab.bin.json"
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(data.prepare_cli PROPERTIES LABELS "sanitize" TIMEOUT 60)
  add_test(NAME data.dataset_resume
           COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/dataset_resume.sh $<TARGET_FILE:pipetrain> 1
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  add_test(NAME data.dataset_resume_2stages
           COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/dataset_resume.sh $<TARGET_FILE:pipetrain> 2
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(data.dataset_resume data.dataset_resume_2stages PROPERTIES TIMEOUT 120)
endif()
