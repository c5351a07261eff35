# data.text_e2e: prepare real text (docs/) with the gpt2 tokenizer, train through 2 stages, sample.
if(TARGET pipetrain)
  add_test(NAME data.text_e2e
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/text_e2e.sh $<TARGET_FILE:pipetrain> ${CMAKE_SOURCE_DIR}
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(data.text_e2e PROPERTIES TIMEOUT 300)
endif()
